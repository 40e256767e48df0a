//! The cost of a sweep against one run, on the Nyström route (issue 14's target: a sweep of
//! alpha in {0, 0.1, ..., 1} x 10 steps, plus auto, at most 1.5x one run).
//!
//! One run builds the Nyström model, distils 10 steps at one alpha, takes the limit, and
//! evaluates every step on the test images. The sweep builds the model once and does the rest for
//! 11 alphas and auto. Both are timed in the same process, after the images are read.
//!
//! ```sh
//! cargo run --release -p sd-experiments --example krr_sweep -- /usr/share/datasets/fashion-mnist 4000
//! ```

use std::time::Instant;

use sd_alpha::Alpha;
use sd_experiments::krr::images::{self, ImageSource};
use sd_experiments::krr::{NystromChoice, draw_landmarks};
use sd_kernel::{Nystrom, OptimalAlpha, Rbf, Schedule, mean_squared_error};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: krr_sweep DATA_DIR [LANDMARKS]")?;
    let landmarks: usize = args.next().map_or(Ok(4000), |m| m.parse())?;
    let source = ImageSource {
        path: path.into(),
        train_size: None,
        test_size: None,
        val_size: Some(6000),
        subset_seed: None,
        label_noise: 0.0,
        noise_seed: 0,
        standardize: false,
    };
    let problem = images::load(&source, true)?;
    let (x, y) = (&problem.train.x, &problem.train.y);
    let rows = draw_landmarks(x.nrows(), NystromChoice { landmarks, seed: 0 });
    let (gamma, lambda, steps) = (0.02, 0.1, 10);
    // The test images' features are built once per model and serve every alpha.
    let evaluate = |model: &Nystrom<Rbf>,
                    at: &sd_kernel::NystromEvaluator,
                    alpha: Alpha|
     -> Result<f64, sd_kernel::Error> {
        let schedule = match alpha {
            Alpha::Fixed(a) => Schedule::Constant(a),
            Alpha::Auto => Schedule::Optimal(OptimalAlpha {
                x: problem.val.x.clone(),
                targets: problem.val.y.clone(),
                clamp: true,
            }),
        };
        let run = model.distill(&schedule, steps)?;
        let last = run.last().and_then(|s| s.alpha).unwrap_or(1.0);
        let limit = model.limit(last)?;
        let mut accuracy = 0.0;
        for coef in run.iter().map(|s| &s.coef).chain([&limit.coef]) {
            let predictions = at.predict(coef.as_ref());
            let _ = mean_squared_error(predictions.as_ref(), problem.test.y.as_ref());
            accuracy = images::accuracy(predictions.as_ref(), &problem.test.labels);
        }
        Ok(accuracy)
    };

    let started = Instant::now();
    let model = Nystrom::new(Rbf::new(gamma)?, x.as_ref(), y.as_ref(), lambda, &rows)?;
    let at = model.at(problem.test.x.as_ref())?;
    let accuracy = evaluate(&model, &at, Alpha::Fixed(0.25))?;
    let one = started.elapsed().as_secs_f64();
    drop((model, at));

    let started = Instant::now();
    let model = Nystrom::new(Rbf::new(gamma)?, x.as_ref(), y.as_ref(), lambda, &rows)?;
    let at = model.at(problem.test.x.as_ref())?;
    let mut line = String::new();
    for alpha in (0..=10)
        .map(|k| Alpha::Fixed(f64::from(k) / 10.0))
        .chain([Alpha::Auto])
    {
        line += &format!(" {alpha}: {:.4}", evaluate(&model, &at, alpha)?);
    }
    let sweep = started.elapsed().as_secs_f64();
    println!(
        "N = {}, M = {landmarks}, {steps} steps + limit, {} test images",
        x.nrows(),
        problem.test.x.nrows()
    );
    println!("one run (alpha 0.25): {one:.1} s, accuracy of the limit {accuracy:.4}");
    println!(
        "sweep (11 alphas + auto): {sweep:.1} s = {:.2}x one run",
        sweep / one
    );
    println!("limit accuracy per alpha:{line}");
    Ok(())
}
