//! The convolution op against a naive convolution in f64 (output, input gradient and weight
//! gradient, on random shapes, kernels, strides, paddings and batch sizes) and against candle's
//! `conv2d` on ResNet's shapes.
//!
//! The random shapes are checked against the naive loops rather than candle: candle 0.11's
//! `conv2d` backward fails on inputs whose height and width leave different remainders to the
//! stride (it sizes the transposed convolution from the height alone).

use candle_core::{DType, Device, Tensor, Var};
use proptest::prelude::*;
use sd_resnet::conv::{Conv2dConfig, conv2d, conv2d_reference};

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 20001) as f32 / 10000.0 - 1.0
        })
        .collect()
}

/// Output, input gradient and weight gradient of `sum(conv(x, w) * probe)`, as f32 values.
fn run(
    x: &[f32],
    w: &[f32],
    probe: &[f32],
    dims: ([usize; 4], [usize; 4]),
    params: Conv2dConfig,
    dtype: DType,
    reference: bool,
) -> [Vec<f32>; 3] {
    let tensor = |v: &[f32], shape: &[usize]| {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    let x = Var::from_tensor(&tensor(x, &dims.0)).unwrap();
    let w = Var::from_tensor(&tensor(w, &dims.1)).unwrap();
    let y = if reference {
        conv2d_reference(x.as_tensor(), w.as_tensor(), params).unwrap()
    } else {
        conv2d(x.as_tensor(), w.as_tensor(), params).unwrap()
    };
    let probe = tensor(probe, y.dims());
    let grads = (&y * &probe)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let flat = |t: &Tensor| {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    [
        flat(&y),
        flat(grads.get(x.as_tensor()).unwrap()),
        flat(grads.get(w.as_tensor()).unwrap()),
    ]
}

/// Output, input gradient and weight gradient of `sum(conv(x, w) * probe)` by the definition,
/// in f64: `y[n, o, i, j] = sum over c, a, b of x[n, c, i s + a - p, j s + b - p] w[o, c, a, b]`.
fn naive(
    x: &[f32],
    w: &[f32],
    probe: &[f32],
    dims: ([usize; 4], [usize; 4]),
    params: Conv2dConfig,
) -> [Vec<f32>; 3] {
    let ([batch, channels, height, width], [out, _, kh, kw]) = dims;
    let (s, p) = (params.stride, params.padding);
    let out_h = (height + 2 * p - kh) / s + 1;
    let out_w = (width + 2 * p - kw) / s + 1;
    let mut y = vec![0f64; batch * out * out_h * out_w];
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; w.len()];
    for n in 0..batch {
        for o in 0..out {
            for i in 0..out_h {
                for j in 0..out_w {
                    let at = ((n * out + o) * out_h + i) * out_w + j;
                    let g = f64::from(probe[at]);
                    for c in 0..channels {
                        for a in 0..kh {
                            for b in 0..kw {
                                let (r, q) = (
                                    (i * s + a) as isize - p as isize,
                                    (j * s + b) as isize - p as isize,
                                );
                                if r < 0 || q < 0 || r >= height as isize || q >= width as isize {
                                    continue;
                                }
                                let xi =
                                    ((n * channels + c) * height + r as usize) * width + q as usize;
                                let wi = ((o * channels + c) * kh + a) * kw + b;
                                y[at] += f64::from(x[xi]) * f64::from(w[wi]);
                                dx[xi] += g * f64::from(w[wi]);
                                dw[wi] += g * f64::from(x[xi]);
                            }
                        }
                    }
                }
            }
        }
    }
    let f32s = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    [f32s(y), f32s(dx), f32s(dw)]
}

/// max |a - b| / max |b|.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale.max(1e-30)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_definition_in_f64(
        batch in 1usize..5, channels in 1usize..6, out in 1usize..7,
        height in 1usize..12, width in 1usize..12,
        kernel_h in 1usize..5, kernel_w in 1usize..5,
        stride in 1usize..4, padding in 0usize..3, seed in any::<u64>(),
    ) {
        let params = Conv2dConfig { stride, padding };
        prop_assume!(height + 2 * padding >= kernel_h && width + 2 * padding >= kernel_w);
        let dims = ([batch, channels, height, width], [out, channels, kernel_h, kernel_w]);
        let out_h = (height + 2 * padding - kernel_h) / stride + 1;
        let out_w = (width + 2 * padding - kernel_w) / stride + 1;
        let x = values(dims.0.iter().product(), seed);
        let w = values(dims.1.iter().product(), seed ^ 0x51);
        let probe = values(batch * out * out_h * out_w, seed ^ 0xa3);
        let fast = run(&x, &w, &probe, dims, params, DType::F32, false);
        let truth = naive(&x, &w, &probe, dims, params);
        for (what, (a, b)) in ["output", "input gradient", "weight gradient"]
            .iter()
            .zip(fast.iter().zip(&truth))
        {
            let error = relative(a, b);
            prop_assert!(error < 1e-4, "{}: relative error {}", what, error);
        }
    }
}

/// ResNet's own shapes, including a batch large enough to be split into chunks.
#[test]
fn matches_candle_conv2d_on_resnet_shapes() {
    for (dims, params) in [
        (
            ([2, 3, 32, 32], [64, 3, 7, 7]),
            Conv2dConfig {
                stride: 2,
                padding: 3,
            },
        ),
        (
            ([3, 64, 8, 8], [64, 64, 3, 3]),
            Conv2dConfig {
                stride: 1,
                padding: 1,
            },
        ),
        (
            ([3, 64, 8, 8], [128, 64, 1, 1]),
            Conv2dConfig {
                stride: 2,
                padding: 0,
            },
        ),
        (
            ([2, 256, 4, 4], [64, 256, 1, 1]),
            Conv2dConfig {
                stride: 1,
                padding: 0,
            },
        ),
        (
            ([5, 512, 2, 2], [512, 512, 3, 3]),
            Conv2dConfig {
                stride: 2,
                padding: 1,
            },
        ),
        // 1 x 1, stride 1, 16 x 16 planes: one product per image, no im2col.
        (
            ([3, 64, 16, 16], [256, 64, 1, 1]),
            Conv2dConfig {
                stride: 1,
                padding: 0,
            },
        ),
        // 3 x 3, stride 1, padding 1 with 256 tiles and more (64 at 256 channels): Winograd's F(2x2, 3x3) for the
        // output and the input gradient, at even and odd sides.
        (
            ([16, 256, 4, 4], [256, 256, 3, 3]),
            Conv2dConfig {
                stride: 1,
                padding: 1,
            },
        ),
        (
            ([16, 64, 8, 8], [64, 64, 3, 3]),
            Conv2dConfig {
                stride: 1,
                padding: 1,
            },
        ),
        (
            ([20, 8, 7, 7], [16, 8, 3, 3]),
            Conv2dConfig {
                stride: 1,
                padding: 1,
            },
        ),
        // K P = 576 x 1024 floats per image: 15 images per chunk, so 3 chunks (im2col for the
        // weight gradient; Winograd for the rest).
        (
            ([33, 64, 32, 32], [8, 64, 3, 3]),
            Conv2dConfig {
                stride: 1,
                padding: 1,
            },
        ),
    ] {
        let x = values(dims.0.iter().product(), 7);
        let w = values(dims.1.iter().product(), 11);
        let y = conv2d_reference(
            &Tensor::from_vec(x.clone(), &dims.0, &Device::Cpu).unwrap(),
            &Tensor::from_vec(w.clone(), &dims.1, &Device::Cpu).unwrap(),
            params,
        )
        .unwrap();
        let probe = values(y.elem_count(), 13);
        let fast = run(&x, &w, &probe, dims, params, DType::F32, false);
        let truth = run(&x, &w, &probe, dims, params, DType::F64, true);
        for (a, b) in fast.iter().zip(&truth) {
            let error = relative(a, b);
            assert!(error < 1e-4, "{dims:?} {params:?}: relative error {error}");
        }
    }
}

/// Every path of the op (Winograd by rows of tiles and by images, its tasks alone or sharing
/// the threads; im2col; per-image 1 x 1 products; the dense matrix) gives the same bits for
/// its output and both gradients on 1, 2 and 3 threads: work is split between threads, never
/// a sum.
#[test]
fn every_path_gives_the_same_bits_on_any_number_of_threads() {
    let cases = [
        // Winograd, rows of tiles: one image per task, four tasks.
        ([4, 8, 32, 32], [8, 8, 3, 3], 1, 1),
        // Winograd by images: one task of 16 images, its products spread over the threads.
        ([16, 8, 8, 8], [16, 8, 3, 3], 1, 1),
        // Winograd by images: three tasks; the weight gradient sums three tasks' products.
        ([40, 4, 8, 8], [6, 4, 3, 3], 1, 1),
        // im2col (stride 2), per-image 1 x 1 products, 1 x 1 on a small plane, dense.
        ([3, 5, 9, 9], [7, 5, 3, 3], 2, 1),
        ([2, 6, 16, 16], [5, 6, 1, 1], 1, 0),
        ([3, 6, 4, 4], [5, 6, 1, 1], 1, 0),
        ([3, 4, 2, 2], [6, 4, 3, 3], 1, 1),
    ];
    for (x_dims, w_dims, stride, padding) in cases {
        let params = Conv2dConfig { stride, padding };
        let (out_h, out_w) = (
            (x_dims[2] + 2 * padding - w_dims[2]) / stride + 1,
            (x_dims[3] + 2 * padding - w_dims[3]) / stride + 1,
        );
        let x = values(x_dims.iter().product(), 3);
        let w = values(w_dims.iter().product(), 5);
        let probe = values(x_dims[0] * w_dims[0] * out_h * out_w, 7);
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| run(&x, &w, &probe, (x_dims, w_dims), params, DType::F32, false))
        };
        let one = on(1);
        for threads in [2, 3] {
            let many = on(threads);
            for (name, a, b) in [("y", 0, 0), ("dx", 1, 1), ("dw", 2, 2)] {
                let (a, b) = (&one[a], &many[b]);
                assert!(
                    a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name} of {x_dims:?} * {w_dims:?} differs on {threads} threads"
                );
            }
        }
    }
}

#[test]
fn shape_errors_are_reported_not_panics() {
    let x = Tensor::zeros((1, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((2, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    let error = conv2d(
        &x,
        &w,
        Conv2dConfig {
            stride: 1,
            padding: 0,
        },
    )
    .unwrap_err();
    assert!(error.to_string().contains("input channels"), "{error}");
}

/// An input that tracks no gradient (a network's images) gets none, and the weight gradient is
/// the same as when it does.
#[test]
fn an_input_without_gradient_gets_none() {
    let dims = ([4, 3, 9, 9], [5, 3, 3, 3]);
    let params = Conv2dConfig {
        stride: 1,
        padding: 1,
    };
    let (x, w) = (values(4 * 3 * 81, 3), values(5 * 27, 5));
    let probe = values(4 * 5 * 81, 9);
    let [_, _, tracked_dw] = run(&x, &w, &probe, dims, params, DType::F32, false);
    let x = Tensor::from_vec(x, &dims.0, &Device::Cpu).unwrap();
    let w = Var::from_tensor(&Tensor::from_vec(w, &dims.1, &Device::Cpu).unwrap()).unwrap();
    let y = conv2d(&x, w.as_tensor(), params).unwrap();
    let probe = Tensor::from_vec(probe, y.dims(), &Device::Cpu).unwrap();
    let grads = (&y * &probe)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&x).is_none());
    let dw: Vec<f32> = grads
        .get(w.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(dw, tracked_dw);
}
