//! Kernel ridge self-distillation at real sizes, the workload of docs/benchmarks.md.
//!
//! `X ~ U[0, 1]^8`, `y = sin(sum of x) + 0.1 noise`, RBF `gamma = 0.5`, `lambda = 0.01`,
//! `alpha = 0.35`, 1000 test points, `n` in {1000, 2000, 4000}. `bench/krr_reference.py` times the
//! same work with numpy, scipy and scikit-learn; `bench/krr_compare.sh` runs both and prints the
//! ratios. Set `SD_BENCH_SIZES=1000,2000` to choose the sizes.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sd_kernel::faer::Mat;
use sd_kernel::{
    OptimalAlpha, Rbf, Schedule, SelfDistillation, Solver, gram_matrix, mean_squared_error,
};

const D: usize = 8;
const TEST_POINTS: usize = 1000;
const GAMMA: f64 = 0.5;
const LAMBDA: f64 = 0.01;
const ALPHA: f64 = 0.35;
const STEPS: usize = 10;

/// SplitMix64: a fixed, dependency-free stream of uniforms.
struct SplitMix(u64);

impl SplitMix {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal by Box-Muller.
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

struct Data {
    x: Mat<f64>,
    y: Mat<f64>,
    x_test: Mat<f64>,
    y_test: Mat<f64>,
}

fn data(n: usize) -> Data {
    let mut rng = SplitMix(42);
    let mut sample = |count: usize| {
        let mut x = Mat::zeros(count, D);
        for i in 0..count {
            for j in 0..D {
                x[(i, j)] = rng.uniform();
            }
        }
        let y = Mat::from_fn(count, 1, |i, _| {
            (0..D).map(|j| x[(i, j)]).sum::<f64>().sin()
        });
        (x, y)
    };
    let (x, mut y) = sample(n);
    let (x_test, y_test) = sample(TEST_POINTS);
    for i in 0..n {
        y[(i, 0)] += 0.1 * rng.normal();
    }
    Data {
        x,
        y,
        x_test,
        y_test,
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("SD_BENCH_SIZES")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![1000, 2000, 4000])
}

fn problem(data: &Data, solver: Solver) -> SelfDistillation<Rbf> {
    SelfDistillation::new(
        Rbf::new(GAMMA).unwrap(),
        data.x.as_ref(),
        data.y.as_ref(),
        LAMBDA,
        solver,
    )
    .unwrap()
}

/// One run: factorise, 10 steps at alpha = 0.35, the limit, test loss of every step and the limit.
fn one_run(data: &Data, solver: Solver) -> Vec<f64> {
    let problem = problem(data, solver);
    let steps = problem.distill(&Schedule::Constant(ALPHA), STEPS).unwrap();
    let limit = problem.limit(ALPHA).unwrap();
    let test = problem.at(data.x_test.as_ref()).unwrap();
    let loss = |coef: &Mat<f64>| {
        mean_squared_error(test.predict(coef.as_ref()).as_ref(), data.y_test.as_ref())
    };
    let mut losses: Vec<f64> = steps.iter().map(|s| loss(&s.fit.dual_coef)).collect();
    losses.push(loss(&limit.fit.dual_coef));
    losses
}

/// A sweep: alpha in {0, 0.1, ..., 1} for 10 steps with the limits, plus the optimal alpha per
/// step against the test data; test losses of all of them.
fn sweep(data: &Data, solver: Solver) -> Vec<f64> {
    let problem = problem(data, solver);
    let test = problem.at(data.x_test.as_ref()).unwrap();
    let loss = |coef: &Mat<f64>| {
        mean_squared_error(test.predict(coef.as_ref()).as_ref(), data.y_test.as_ref())
    };
    let alphas: Vec<f64> = (0..=10).map(|k| k as f64 / 10.0).collect();
    let mut losses = Vec::new();
    for chain in problem.distill_many(&alphas, STEPS).unwrap() {
        losses.extend(chain.iter().map(|s| loss(&s.fit.dual_coef)));
    }
    for limit in problem.limits(&alphas).unwrap() {
        losses.push(loss(&limit.fit.dual_coef));
    }
    let optimal = Schedule::Optimal(OptimalAlpha {
        x: data.x_test.clone(),
        targets: data.y_test.clone(),
        clamp: false,
    });
    let steps = problem.distill(&optimal, STEPS).unwrap();
    losses.extend(steps.iter().map(|s| loss(&s.fit.dual_coef)));
    losses
}

fn benches(c: &mut Criterion) {
    for n in sizes() {
        let data = data(n);
        let mut group = c.benchmark_group("krr");
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if n >= 4000 { 20 } else { 5 }));
        let kernel = Rbf::new(GAMMA).unwrap();
        group.bench_function(BenchmarkId::new("gram", n), |b| {
            b.iter(|| gram_matrix(&kernel, black_box(data.x.as_ref())))
        });
        group.bench_function(BenchmarkId::new("factor_cholesky", n), |b| {
            b.iter(|| problem(&data, Solver::Cholesky))
        });
        group.bench_function(BenchmarkId::new("factor_eigen", n), |b| {
            b.iter(|| problem(&data, Solver::Eigen))
        });
        group.bench_function(BenchmarkId::new("one_run_cholesky", n), |b| {
            b.iter(|| one_run(&data, Solver::Cholesky))
        });
        group.bench_function(BenchmarkId::new("sweep_cholesky", n), |b| {
            b.iter(|| sweep(&data, Solver::Cholesky))
        });
        group.bench_function(BenchmarkId::new("sweep_eigen", n), |b| {
            b.iter(|| sweep(&data, Solver::Eigen))
        });
        group.finish();
    }
}

criterion_group!(krr, benches);
criterion_main!(krr);
