//! The max-pool's gradient against finite differences, on random shapes, strides and paddings.

use candle_core::{Device, Tensor, Var};
use proptest::prelude::*;
use sd_resnet::maxpool::{MaxPool2d, max_pool2d};

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn gradient_matches_finite_differences(
        n in 1usize..3, c in 1usize..3, h in 1usize..8, w in 1usize..8,
        kernel in 1usize..4, stride in 1usize..4, pad_choice in 0usize..2, seed in any::<u64>(),
    ) {
        let padding = pad_choice.min(kernel / 2);
        let pool = MaxPool2d { kernel, stride, padding };
        prop_assume!(pool.output_size(h).is_some() && pool.output_size(w).is_some());
        // Distinct values (a permutation, scaled) so the maximum of each window is unique and the
        // function is differentiable at the point.
        let count = n * c * h * w;
        let mut values: Vec<f64> = (0..count).map(|i| i as f64 * 0.37 + 0.1).collect();
        let mut state = seed | 1;
        for i in (1..count).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            values.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let x = Var::from_tensor(&Tensor::from_vec(values.clone(), (n, c, h, w), &Device::Cpu).unwrap()).unwrap();
        let y = max_pool2d(x.as_tensor(), pool).unwrap();
        // A random linear functional of the output, so every output's gradient matters.
        let weights: Vec<f64> = (0..y.elem_count()).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
        let weights = Tensor::from_vec(weights, y.shape(), &Device::Cpu).unwrap();
        let loss = |t: &Tensor| -> f64 {
            (max_pool2d(t, pool).unwrap() * &weights).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let grads = (y * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let analytic = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let eps = 1e-3; // far below the 0.37 spacing: no window changes its winner
        for i in 0..count {
            let mut plus = values.clone();
            plus[i] += eps;
            let mut minus = values.clone();
            minus[i] -= eps;
            let fd = (loss(&Tensor::from_vec(plus, (n, c, h, w), &Device::Cpu).unwrap())
                - loss(&Tensor::from_vec(minus, (n, c, h, w), &Device::Cpu).unwrap())) / (2.0 * eps);
            prop_assert!((fd - analytic[i]).abs() < 1e-6, "input {}: fd {} analytic {}", i, fd, analytic[i]);
        }
    }
}
