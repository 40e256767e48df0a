//! The paper's spectral form of self-distillation (Borup & Andersen 2021, section 3).
//!
//! With the kernel matrix `K = V D V^T` (eigenvalues `d_k >= 0`, sorted descending here), every
//! distillation step's fitted values are `V B(t) V^T y` for a diagonal `B(t)`:
//!
//! - `A = D (D + lambda I)^-1`, entrywise `a_k = d_k / (d_k + lambda)`;
//! - `B(0) = A` (step 0, plain kernel ridge regression);
//! - `B(t) = A (alpha_t I + (1 - alpha_t) B(t-1))` for `t >= 1`.
//!
//! Steps count from 0, as everywhere in this workspace; the paper counts the same iterates from
//! 1, so its `B(t)` is `B(t - 1)` here.
//! - for a constant `alpha > 0` the iterates converge to `B(inf) = D (D + (lambda / alpha) I)^-1`,
//!   kernel ridge regression with ridge `lambda / alpha`; at `alpha = 0` to zero.
//!
//! These functions work on the eigenvalues alone, in `O(n)` per step; [`crate::SelfDistillation`]
//! uses them for the diagonals of its steps with the eigen solver.

/// `a_k = d_k / (d_k + ridge)`: the diagonal of `A = D (D + ridge I)^-1`, the shrinkage of plain
/// kernel ridge regression along each eigenvector.
pub fn shrinkage(eigenvalues: &[f64], ridge: f64) -> Vec<f64> {
    eigenvalues.iter().map(|&d| d / (d + ridge)).collect()
}

/// One step of the recursion `B(t) = A (alpha I + (1 - alpha) B(t-1))`, entrywise.
pub fn next_b_diag(a: &[f64], previous: &[f64], alpha: f64) -> Vec<f64> {
    a.iter()
        .zip(previous)
        .map(|(&a, &b)| a * (alpha + (1.0 - alpha) * b))
        .collect()
}

/// The diagonals of `B(0), ..., B(T - 1)` for `T = alphas.len()` steps, where `alphas[t]` is the
/// ground-truth weight of step `t` (`alphas[0]` has no effect: `B(0) = A` whatever it is).
pub fn b_diagonals(eigenvalues: &[f64], lambda: f64, alphas: &[f64]) -> Vec<Vec<f64>> {
    let a = shrinkage(eigenvalues, lambda);
    let mut diagonals: Vec<Vec<f64>> = Vec::with_capacity(alphas.len());
    for &alpha in alphas {
        let next = match diagonals.last() {
            None => a.clone(),
            Some(previous) => next_b_diag(&a, previous, alpha),
        };
        diagonals.push(next);
    }
    diagonals
}

/// The diagonal of the limit `B(inf) = D (D + (lambda / alpha) I)^-1` of a constant-`alpha` run; all
/// zeros at `alpha = 0` (the iterates collapse to the zero function).
pub fn limit_b_diag(eigenvalues: &[f64], lambda: f64, alpha: f64) -> Vec<f64> {
    if alpha == 0.0 {
        vec![0.0; eigenvalues.len()]
    } else {
        shrinkage(eigenvalues, lambda / alpha)
    }
}

/// The ratios `R_k = b_k / b_(k+1)` of consecutive diagonal entries (`n - 1` of them). `R_k > 1`
/// grows with each step: the solution sparsifies, small-eigenvalue directions shrinking fastest.
/// Where `b_(k+1)` is zero the ratio is infinite (or NaN when both are).
pub fn ratios(b_diag: &[f64]) -> Vec<f64> {
    b_diag.windows(2).map(|pair| pair[0] / pair[1]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursion_matches_its_closed_form() {
        // B(t) = alpha sum_(i=1..t) (1 - alpha)^(i-1) A^i + (1 - alpha)^t A^(t+1)
        let eigenvalues = [5.0, 2.0, 0.7, 0.01, 0.0];
        let (lambda, alpha) = (0.3, 0.35);
        let diagonals = b_diagonals(&eigenvalues, lambda, &[alpha; 12]);
        let a = shrinkage(&eigenvalues, lambda);
        for (t, b) in diagonals.iter().enumerate() {
            let t = t as i32;
            for k in 0..eigenvalues.len() {
                let mut closed = (1.0 - alpha).powi(t) * a[k].powi(t + 1);
                for i in 1..=t {
                    closed += alpha * (1.0 - alpha).powi(i - 1) * a[k].powi(i);
                }
                assert!((b[k] - closed).abs() <= 1e-15, "t={t} k={k}");
            }
        }
    }

    #[test]
    fn iterates_converge_to_the_limit() {
        let eigenvalues = [3.0, 1.0, 0.2];
        let diagonals = b_diagonals(&eigenvalues, 0.2, &[0.25; 200]);
        let limit = limit_b_diag(&eigenvalues, 0.2, 0.25);
        for (b, l) in diagonals.last().unwrap().iter().zip(&limit) {
            assert!((b - l).abs() < 1e-12);
        }
        assert_eq!(limit_b_diag(&eigenvalues, 0.2, 0.0), vec![0.0; 3]);
    }

    #[test]
    fn alpha_one_keeps_the_first_fit() {
        let eigenvalues = [3.0, 1.0, 0.2];
        let diagonals = b_diagonals(&eigenvalues, 0.2, &[1.0; 5]);
        for b in &diagonals {
            assert_eq!(b, &diagonals[0]);
        }
    }

    #[test]
    fn ratios_of_consecutive_entries() {
        assert_eq!(ratios(&[4.0, 2.0, 1.0]), vec![2.0, 2.0]);
        assert!(ratios(&[1.0, 0.0])[0].is_infinite());
    }
}
