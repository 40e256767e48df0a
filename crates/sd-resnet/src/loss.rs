//! The original code's losses (self_distiller.py), and soft-target cross-entropy.
//!
//! Step 0, the first fit: `MSE(softmax(z), onehot)`. Step `k >= 1`:
//! `alpha MSE(softmax(z), onehot) + (1 - alpha) MSE(softmax(z), softmax(z_teacher))`, with the
//! teacher's logits a constant (no gradient). MSE is the mean over batch x classes. Training adds
//! `reg_coef * sum_p |p|_2` over the trainable tensors: the L2 norm of each tensor, not squared.

use candle_core::{D, Tensor, Var};

use rayon::prelude::*;

use crate::cpu::{lane_sum, wide};
use crate::error::{ResnetError, Result};

/// Which loss compares the student's outputs with its targets.
///
/// Text form ([`std::str::FromStr`], [`std::fmt::Display`], and serde with the `serde` feature):
/// `mse` or `ce`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
    strum::EnumMessage,
)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum LossKind {
    /// Mean squared error between probabilities: the original code's (default).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "mse"))]
    #[strum(serialize = "mse")]
    #[strum(message = "Mean squared error between softmax outputs and targets (the original's)")]
    SoftmaxMse,
    /// Cross-entropy against soft targets, `-mean_b sum_c t_bc log softmax(z)_bc`: what most
    /// distillation libraries use.
    #[cfg_attr(feature = "serde", serde(rename = "ce"))]
    #[strum(serialize = "ce")]
    #[strum(message = "Cross-entropy against soft targets")]
    CrossEntropy,
}

impl LossKind {
    /// `mse` or `ce`.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl std::str::FromStr for LossKind {
    type Err = ResnetError;

    fn from_str(text: &str) -> Result<Self> {
        crate::error::parse_name("loss", text)
    }
}

/// `softmax(z)` over the last dimension, differentiable (max-shifted for stability).
pub fn softmax(logits: &Tensor) -> Result<Tensor> {
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
    let exp = shifted.exp()?;
    Ok(exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)?)
}

/// `log softmax(z)` over the last dimension, differentiable.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum)?)
}

/// The loss of `logits` against probability `targets` (both `[B, C]`).
pub fn against(kind: LossKind, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.dims() != targets.dims() {
        return Err(ResnetError::LossShapes {
            logits: logits.dims().to_vec(),
            targets: targets.dims().to_vec(),
        });
    }
    Ok(match kind {
        LossKind::SoftmaxMse => (softmax(logits)? - targets)?.sqr()?.mean_all()?,
        LossKind::CrossEntropy => {
            let batch = logits.dim(0)? as f64;
            ((log_softmax(logits)? * targets)?.sum_all()? * (-1.0 / batch))?
        }
    })
}

/// A distillation step's loss: `against(onehot)` alone for the first fit (`teacher = None`),
/// else `alpha against(onehot) + (1 - alpha) against(softmax(teacher))`, the teacher detached.
pub fn distillation(
    kind: LossKind,
    logits: &Tensor,
    one_hot: &Tensor,
    teacher_logits: Option<&Tensor>,
    alpha: f64,
) -> Result<Tensor> {
    let truth = against(kind, logits, one_hot)?;
    match teacher_logits {
        None => Ok(truth),
        Some(teacher) => {
            if !(0.0..=1.0).contains(&alpha) {
                return Err(ResnetError::Alpha { alpha });
            }
            let soft = softmax(&teacher.detach())?.detach();
            let distilled = against(kind, logits, &soft)?;
            Ok(((truth * alpha)? + (distilled * (1.0 - alpha))?)?)
        }
    }
}

/// `sum_p |p|_2` over `params` (the norm of each tensor, not squared), as the original's
/// regularizer; multiply by `reg_coef`.
///
/// Each norm is `sqrt(sum p^2 + 1e-24)`: at a tensor of zeros (BatchNorm biases start there) the
/// plain square root's gradient is 0/0 = NaN, where PyTorch's `torch.norm` gives 0; the tiny
/// constant gives 0 as well and changes a norm by at most 1e-12.
///
/// On the CPU each norm is one op (one pass forward, one backward, `p / |p|` times the incoming
/// gradient) instead of five candle ops and their backward passes over all 11M (ResNet-18) to
/// 23M (ResNet-50) parameters; elsewhere, and in [`l2_norms_reference`], the composition.
pub fn l2_norms(params: &[Var]) -> Result<Tensor> {
    sum_norms(params, |p| {
        if p.device().is_cpu() && p.is_contiguous() {
            Ok(p.apply_op1(L2Norm)?)
        } else {
            composed_norm(p)
        }
    })
}

/// [`l2_norms`] as the composition `sqrt(sum(p^2) + 1e-24)` of candle ops, for comparison.
pub fn l2_norms_reference(params: &[Var]) -> Result<Tensor> {
    sum_norms(params, composed_norm)
}

fn composed_norm(p: &Tensor) -> Result<Tensor> {
    Ok((p.sqr()?.sum_all()? + L2_FLOOR)?.sqrt()?)
}

/// Added under every square root: see [`l2_norms`].
const L2_FLOOR: f64 = 1e-24;

fn sum_norms(params: &[Var], norm: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for p in params {
        let norm = norm(p.as_tensor())?;
        total = Some(match total {
            None => norm,
            Some(t) => (t + norm)?,
        });
    }
    total.ok_or(ResnetError::NoParameters)
}

/// `sqrt(sum p^2 + 1e-24)` as one op (sum in f64); backward `grad * p / norm`.
struct L2Norm;

impl candle_core::CustomOp1 for L2Norm {
    fn name(&self) -> &'static str {
        "sd-l2-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the L2-norm op takes contiguous tensors")
        };
        let squares = match storage {
            // Chunks of a fixed size summed in parallel, their sums added in order: the same
            // bits at any thread count.
            CpuStorage::F32(v) => v[start..end]
                .par_chunks(1 << 15)
                .map(|chunk| {
                    wide(
                        #[inline(always)]
                        move || lane_sum(chunk, |x| x * x),
                    )
                })
                .collect::<Vec<f64>>()
                .into_iter()
                .sum(),
            CpuStorage::F64(v) => v[start..end].iter().map(|&x| x.powi(2)).sum::<f64>(),
            _ => candle_core::bail!("the L2-norm op takes f32 or f64 tensors"),
        };
        let norm = (squares + L2_FLOOR).sqrt();
        let out = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(vec![norm as f32]),
            _ => CpuStorage::F64(vec![norm]),
        };
        Ok((out, candle_core::Shape::from(())))
    }

    fn bwd(&self, p: &Tensor, norm: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(p.broadcast_mul(&(grad / norm)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Training at alpha = 1 skips the teacher (sd-train): the loss and its gradient must be
    /// those with the teacher's term weighted 0, bit for bit.
    #[test]
    fn alpha_one_is_the_ground_truth_alone_bit_for_bit() {
        let device = candle_core::Device::Cpu;
        let values = |n: usize, phase: f64| -> Vec<f32> {
            (0..n)
                .map(|i| ((i as f64 * 0.61 + phase).sin() * 3.0) as f32)
                .collect()
        };
        let logits =
            Var::from_tensor(&Tensor::from_vec(values(24, 0.2), (4, 6), &device).unwrap()).unwrap();
        let teacher = Tensor::from_vec(values(24, 1.7), (4, 6), &device).unwrap();
        let one_hot = Tensor::from_vec(
            (0..24)
                .map(|i| f32::from(u8::from(i % 6 == (i / 6) % 6)))
                .collect(),
            (4, 6),
            &device,
        )
        .unwrap();
        for kind in [LossKind::SoftmaxMse, LossKind::CrossEntropy] {
            let with =
                distillation(kind, logits.as_tensor(), &one_hot, Some(&teacher), 1.0).unwrap();
            let without = distillation(kind, logits.as_tensor(), &one_hot, None, 1.0).unwrap();
            let bits = |t: &Tensor| -> Vec<u32> {
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            };
            assert_eq!(bits(&with), bits(&without), "{kind:?}");
            let (gw, go) = (with.backward().unwrap(), without.backward().unwrap());
            assert_eq!(
                bits(gw.get(&logits).unwrap()),
                bits(go.get(&logits).unwrap()),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn fused_norms_equal_the_composition_with_gradients() {
        let device = candle_core::Device::Cpu;
        let params: Vec<Var> = [(3usize, 5usize, 0.7f64), (1, 9, 0.0), (4, 4, -1.3)]
            .iter()
            .map(|&(r, c, shift)| {
                let values: Vec<f32> = (0..r * c)
                    .map(|i| {
                        if shift == 0.0 {
                            0.0
                        } else {
                            ((i as f64 * 0.77).sin() + shift) as f32
                        }
                    })
                    .collect();
                Var::from_tensor(&Tensor::from_vec(values, (r, c), &device).unwrap()).unwrap()
            })
            .collect();
        let fused = l2_norms(&params).unwrap();
        let composed = l2_norms_reference(&params).unwrap();
        let (a, b) = (
            fused.to_scalar::<f32>().unwrap(),
            composed.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() <= 1e-6 * b.abs(), "{a} vs {b}");
        let (ga, gb) = (
            (fused * 3.0).unwrap().backward().unwrap(),
            (composed * 3.0).unwrap().backward().unwrap(),
        );
        for p in &params {
            let x: Vec<f32> = ga
                .get(p.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let y: Vec<f32> = gb
                .get(p.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (x, y) in x.iter().zip(&y) {
                assert!(x.is_finite() && (x - y).abs() <= 1e-5, "{x} vs {y}");
            }
        }
    }
    use candle_core::Device;

    fn t(values: &[f64], shape: (usize, usize)) -> Tensor {
        Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn softmax_row(z: &[f64]) -> Vec<f64> {
        let max = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    /// The 2 x 10 example by hand.
    fn example() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let logits: Vec<f64> = (0..20).map(|i| ((i * 7) % 11) as f64 * 0.3 - 1.0).collect();
        let teacher: Vec<f64> = (0..20).map(|i| ((i * 3) % 13) as f64 * 0.2 - 0.5).collect();
        let mut one_hot = vec![0.0; 20];
        one_hot[3] = 1.0;
        one_hot[10 + 7] = 1.0;
        (logits, teacher, one_hot)
    }

    #[test]
    fn distillation_loss_equals_a_hand_computation() {
        let (z, zt, y) = example();
        let alpha = 0.3;
        let mut expected_truth = 0.0;
        let mut expected_teacher = 0.0;
        let mut expected_ce = 0.0;
        for b in 0..2 {
            let p = softmax_row(&z[b * 10..b * 10 + 10]);
            let q = softmax_row(&zt[b * 10..b * 10 + 10]);
            for c in 0..10 {
                expected_truth += (p[c] - y[b * 10 + c]).powi(2) / 20.0;
                expected_teacher += (p[c] - q[c]).powi(2) / 20.0;
                let target = alpha * y[b * 10 + c] + (1.0 - alpha) * q[c];
                expected_ce -= target * p[c].ln() / 2.0;
            }
        }
        let (zt_t, z_t, y_t) = (t(&zt, (2, 10)), t(&z, (2, 10)), t(&y, (2, 10)));
        let first = distillation(LossKind::SoftmaxMse, &z_t, &y_t, None, alpha).unwrap();
        assert!((first.to_scalar::<f64>().unwrap() - expected_truth).abs() < 1e-12);
        let mixed = distillation(LossKind::SoftmaxMse, &z_t, &y_t, Some(&zt_t), alpha).unwrap();
        let expected = alpha * expected_truth + (1.0 - alpha) * expected_teacher;
        assert!((mixed.to_scalar::<f64>().unwrap() - expected).abs() < 1e-12);
        let ce = distillation(LossKind::CrossEntropy, &z_t, &y_t, Some(&zt_t), alpha).unwrap();
        assert!((ce.to_scalar::<f64>().unwrap() - expected_ce).abs() < 1e-12);
    }

    #[test]
    fn gradients_match_finite_differences_and_spare_the_teacher() {
        let (z, zt, y) = example();
        let (y_t, alpha) = (t(&y, (2, 10)), 0.4);
        for kind in [LossKind::SoftmaxMse, LossKind::CrossEntropy] {
            let student = Var::from_tensor(&t(&z, (2, 10))).unwrap();
            let teacher = Var::from_tensor(&t(&zt, (2, 10))).unwrap();
            let loss = distillation(
                kind,
                student.as_tensor(),
                &y_t,
                Some(teacher.as_tensor()),
                alpha,
            )
            .unwrap();
            let grads = loss.backward().unwrap();
            assert!(
                grads.get(teacher.as_tensor()).is_none(),
                "no gradient into the teacher"
            );
            let analytic = grads
                .get(student.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let value = |z: &[f64]| {
                distillation(kind, &t(z, (2, 10)), &y_t, Some(&t(&zt, (2, 10))), alpha)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let eps = 1e-6;
            for i in 0..20 {
                let (mut plus, mut minus) = (z.clone(), z.clone());
                plus[i] += eps;
                minus[i] -= eps;
                let fd = (value(&plus) - value(&minus)) / (2.0 * eps);
                assert!(
                    (fd - analytic[i]).abs() < 1e-7,
                    "{kind:?} {i}: {fd} vs {}",
                    analytic[i]
                );
            }
        }
    }

    #[test]
    fn the_regularizer_sums_unsquared_norms() {
        let a = Var::from_tensor(&t(&[3.0, 4.0], (1, 2))).unwrap();
        let b = Var::from_tensor(&t(&[0.0, 0.0, 12.0, 5.0], (2, 2))).unwrap();
        let zero = Var::from_tensor(&t(&[0.0, 0.0], (1, 2))).unwrap();
        let total = l2_norms(&[a.clone(), b, zero.clone()]).unwrap();
        assert!((total.to_scalar::<f64>().unwrap() - 18.0).abs() < 1e-11);
        let grads = total.backward().unwrap();
        let g_zero = grads
            .get(zero.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(
            g_zero,
            [0.0, 0.0],
            "zero tensors get a zero gradient, not NaN"
        );
        let g_a = grads
            .get(a.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!((g_a[0] - 0.6).abs() < 1e-12 && (g_a[1] - 0.8).abs() < 1e-12);
    }
}
