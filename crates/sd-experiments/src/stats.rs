//! The statistics of the reports and their one cell format: means and sample standard
//! deviations over seeds ([`Stats`]), paired differences with Student-t intervals
//! ([`paired_interval`]), written as [`percent_cell`] and [`difference_cell`] in every table,
//! the networks' and the kernels' alike.

/// Mean, sample standard deviation and count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (`n - 1`); 0 for one value.
    pub std: f64,
    /// Values.
    pub n: usize,
}

impl Stats {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Stats { mean, std, n })
    }

    /// In percent: `81.23 ± 0.45`, or `81.23` for one seed.
    pub fn percent(&self) -> String {
        if self.n > 1 {
            format!("{:.2} ± {:.2}", 100.0 * self.mean, 100.0 * self.std)
        } else {
            format!("{:.2}", 100.0 * self.mean)
        }
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (`df >= 1`): the factor of a
/// two-sided 95% confidence interval of a mean from `df + 1` values. Tabulated to 3 decimals for
/// `df <= 30`, then the normal's 1.960 (within 0.04 beyond 30).
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => 1.960,
    }
}

/// The mean of paired differences and the half-width of its 95% confidence interval (Student's
/// t); the half-width is `None` for fewer than two pairs.
pub fn paired_interval(differences: &[f64]) -> Option<(f64, Option<f64>)> {
    let stats = Stats::of(differences)?;
    let half = (stats.n > 1).then(|| t_975(stats.n - 1) * stats.std / (stats.n as f64).sqrt());
    Some((stats.mean, half))
}

/// The cell of a mean over seeds in every table of the report, networks' and kernels' alike:
/// [`Stats::percent`], or `-` where there is nothing.
pub fn percent_cell(stats: Option<Stats>) -> String {
    stats.map_or("-".into(), |s| s.percent())
}

/// The cell of a paired difference in every table of the report: the mean in points with its
/// 95% interval and `*` where the interval excludes 0 (`+0.41 [+0.12, +0.70] *`), `+0.41 (n =
/// 1)` for one pair (no interval), `-` for none.
pub fn difference_cell(differences: &[f64]) -> String {
    match paired_interval(differences) {
        None => "-".into(),
        Some((mean, None)) => format!("{:+.2} (n = 1)", 100.0 * mean),
        Some((mean, Some(half))) => {
            let (low, high) = (100.0 * (mean - half), 100.0 * (mean + half));
            let star = if low > 0.0 || high < 0.0 { " *" } else { "" };
            format!("{:+.2} [{low:+.2}, {high:+.2}]{star}", 100.0 * mean)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_intervals_use_students_t() {
        assert_eq!(t_975(1), 12.706);
        assert_eq!(t_975(100), 1.960);
        let (mean, half) = paired_interval(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(mean, 2.0);
        // sd 1, n 3: 4.303 / sqrt(3).
        assert!((half.unwrap() - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(paired_interval(&[0.5]), Some((0.5, None)));
        assert_eq!(paired_interval(&[]), None);
    }

    #[test]
    fn stats_use_the_sample_deviation() {
        let s = Stats::of(&[0.8, 0.9]).unwrap();
        assert!((s.mean - 0.85).abs() < 1e-12);
        assert!((s.std - 0.070_710_678).abs() < 1e-6);
        assert_eq!(s.percent(), "85.00 ± 7.07");
        assert_eq!(Stats::of(&[0.5]).unwrap().percent(), "50.00");
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn every_table_writes_a_cell_one_way() {
        assert_eq!(percent_cell(Stats::of(&[0.8, 0.9])), "85.00 ± 7.07");
        assert_eq!(percent_cell(Stats::of(&[0.5])), "50.00");
        assert_eq!(percent_cell(None), "-");
        // +2, +3, +4 points: sd 1, half-width 4.303 / sqrt(3); the interval excludes 0.
        assert_eq!(
            difference_cell(&[0.02, 0.03, 0.04]),
            "+3.00 [+0.52, +5.48] *"
        );
        assert_eq!(
            difference_cell(&[0.02, -0.03, 0.04]),
            "+1.00 [-7.96, +9.96]"
        );
        assert_eq!(difference_cell(&[-0.0168]), "-1.68 (n = 1)");
        assert_eq!(difference_cell(&[]), "-");
    }
}
