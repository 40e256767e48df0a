//! The cost of a sweep against one run (issue 14's target: a sweep of alpha in {0, 0.1, ..., 1}
//! x 10 steps, plus auto, at most 1.5x one run), on Fashion-MNIST, on any route.
//!
//! One run is `krr::run` at alpha 0.25: read the images, build and factorise the model, distil 10
//! steps, take the limit, evaluate every step on the 10,000 test images. The sweep is
//! `krr::run_alphas` with the 12 alphas: the same, with one model and one test kernel for all.
//! Both hold out the same 10% of the training images (for auto) and are timed in one process.
//!
//! ```sh
//! cargo run --release -p sd-experiments --example krr_sweep -- DATA nystrom 4000  # all 60,000 images
//! cargo run --release -p sd-experiments --example krr_sweep -- DATA cholesky 10000
//! cargo run --release -p sd-experiments --example krr_sweep -- DATA eigen 5000
//! ```
//!
//! `RUST_LOG=sd_experiments=debug` prints the time of each phase.

use std::time::Instant;

use sd_alpha::Alpha;
use sd_experiments::krr::images::ImageSource;
use sd_experiments::krr::{KernelChoice, KrrConfig, NystromChoice, SolverChoice, run, run_alphas};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let usage = "usage: krr_sweep DATA_DIR nystrom|cholesky|eigen SIZE";
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or(usage)?;
    let route = args.next().ok_or(usage)?;
    let size: usize = args.next().ok_or(usage)?.parse()?;
    let (train_size, solver, nystrom) = match route.as_str() {
        "nystrom" => (
            None,
            SolverChoice::Cholesky,
            Some(NystromChoice {
                landmarks: size,
                seed: 0,
            }),
        ),
        "cholesky" => (Some(size), SolverChoice::Cholesky, None),
        "eigen" => (Some(size), SolverChoice::Eigen, None),
        _ => return Err(usage.into()),
    };
    let chosen = train_size.unwrap_or(60_000);
    let config = KrrConfig {
        kernel: KernelChoice::Rbf { gamma: 0.02 },
        lambda: 0.1,
        alpha: Alpha::Fixed(0.25),
        clamp: true,
        steps: 10,
        images: Some(ImageSource {
            path: path.into(),
            train_size,
            test_size: None,
            val_size: Some(chosen / 10),
            subset_seed: None,
            label_noise: 0.0,
            noise_seed: 0,
            standardize: false,
        }),
        solver,
        nystrom,
        need_spectrum: false,
        need_curves: false,
        ..KrrConfig::toy(Alpha::Fixed(0.25))
    };

    let started = Instant::now();
    let one = run(&KrrConfig {
        clamp: false,
        ..config.clone()
    })?;
    let one_seconds = started.elapsed().as_secs_f64();

    let alphas: Vec<Alpha> = (0..=10)
        .map(|k| Alpha::Fixed(f64::from(k) / 10.0))
        .chain([Alpha::Auto])
        .collect();
    let started = Instant::now();
    let sweep = run_alphas(&config, &alphas)?;
    let sweep_seconds = started.elapsed().as_secs_f64();

    let limit = |report: &sd_experiments::krr::KrrReport| {
        report
            .limit
            .as_ref()
            .and_then(|l| l.accuracy)
            .map_or("-".into(), |a| format!("{a:.4}"))
    };
    println!(
        "{route}, {} training images, 10 steps + limit, {} test images",
        one.n_train, 10_000
    );
    println!(
        "one run (alpha 0.25): {one_seconds:.1} s, limit accuracy {}",
        limit(&one)
    );
    println!(
        "sweep (alpha 0, 0.1, ..., 1 and auto, clamped): {sweep_seconds:.1} s, {:.2}x one run",
        sweep_seconds / one_seconds
    );
    for report in &sweep {
        println!("  alpha {}: limit accuracy {}", report.alpha, limit(report));
    }
    Ok(())
}
