//! # sd-alpha
//!
//! The ground-truth weight of self-distillation with weighted ground-truth targets (Borup &
//! Andersen, "Even your Teacher Needs Guidance", NeurIPS 2021). Each distillation step's student
//! fits `alpha * y + (1 - alpha) * u`, the ground truth `y` mixed with its teacher's outputs `u`:
//!
//! - [`Alpha`]: a fixed weight in `[0, 1]`, or [`Alpha::Auto`], the paper's Algorithm 1, which
//!   chooses each step's weight with [`optimal_alpha`];
//! - [`optimal_alpha`]: `<r - u0, u1 - u0> / |u1 - u0|^2`, the weight whose mixture
//!   `alpha u1 + (1 - alpha) u0` of the first fit `u1` and the teacher-only student `u0` lies
//!   closest to reference targets `r`.
//!
//! # Step numbering
//!
//! One numbering serves the whole workspace, kernels and networks alike: **step 0 is the first
//! fit**, on the ground truth alone (no teacher, no alpha); step `t >= 1` is the `t`-th
//! distillation step, whose teacher is step `t - 1`. "`n` steps" means steps `0..n`, the first
//! fit included. (The original notebook's loss table numbers the same rows 1 to 6.)
//!
//! ```
//! use sd_alpha::Alpha;
//!
//! let alphas = ["0", "0.5", "auto"].map(|s| s.parse::<Alpha>()).into_iter();
//! let alphas: Vec<Alpha> = alphas.collect::<Result<_, _>>()?;
//! assert_eq!(alphas[1].fixed(), Some(0.5));
//! assert_eq!(alphas[2].to_string(), "auto");
//! assert_eq!(serde_json::to_string(&alphas).unwrap(), r#"[0.0,0.5,"auto"]"#);
//! # Ok::<(), sd_alpha::ParseAlphaError>(())
//! ```

use std::fmt;
use std::str::FromStr;

/// The weight of the ground truth in a distillation step's targets.
///
/// Text form ([`FromStr`], [`fmt::Display`]): a number in `[0, 1]` as Rust prints it (`0`,
/// `0.25`), or `auto`. In JSON and TOML (serde) a fixed alpha is a number and the automatic one
/// the string `"auto"`; a number written as a string (`"0.25"`) is read too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Alpha {
    /// The same weight at every step, in `[0, 1]`: 0 is pure self-distillation (the teacher
    /// alone), 1 refits the ground truth (no distillation at all).
    Fixed(f64),
    /// Algorithm 1: each step's weight chosen by [`optimal_alpha`] against reference targets
    /// (held-out data, or the true function where it is known).
    Auto,
}

/// Text that is not an alpha: neither a number in `[0, 1]` nor `auto`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("alpha must be a number in [0, 1] or 'auto', got '{text}'")]
pub struct ParseAlphaError {
    /// What was given.
    pub text: String,
}

impl Alpha {
    /// `Fixed(alpha)` when `alpha` lies in `[0, 1]` (and is not NaN).
    pub fn new(alpha: f64) -> Result<Alpha, ParseAlphaError> {
        if (0.0..=1.0).contains(&alpha) {
            Ok(Alpha::Fixed(alpha))
        } else {
            Err(ParseAlphaError {
                text: alpha.to_string(),
            })
        }
    }

    /// The weight of a fixed alpha; `None` for `Auto`.
    pub fn fixed(self) -> Option<f64> {
        match self {
            Alpha::Fixed(alpha) => Some(alpha),
            Alpha::Auto => None,
        }
    }

    /// Whether this is Algorithm 1's automatic choice.
    pub fn is_auto(self) -> bool {
        self == Alpha::Auto
    }
}

impl FromStr for Alpha {
    type Err = ParseAlphaError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("auto") {
            return Ok(Alpha::Auto);
        }
        match trimmed.parse::<f64>() {
            Ok(alpha) if (0.0..=1.0).contains(&alpha) => Ok(Alpha::Fixed(alpha)),
            _ => Err(ParseAlphaError {
                text: text.to_string(),
            }),
        }
    }
}

impl fmt::Display for Alpha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alpha::Fixed(alpha) => write!(f, "{alpha}"),
            Alpha::Auto => f.write_str("auto"),
        }
    }
}

impl serde::Serialize for Alpha {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Alpha::Fixed(alpha) => s.serialize_f64(*alpha),
            Alpha::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Alpha {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Alpha;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number in [0, 1] or \"auto\"")
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Alpha, E> {
                Alpha::new(v).map_err(|_| E::custom(format!("alpha {v} is outside [0, 1]")))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Alpha, E> {
                self.visit_f64(v as f64)
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Alpha, E> {
                self.visit_f64(v as f64)
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Alpha, E> {
                v.parse().map_err(|e: ParseAlphaError| {
                    E::custom(format!(
                        "alpha must be a number in [0, 1] or \"auto\", got \"{}\"",
                        e.text
                    ))
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Below this share of `|u1|^2 + |u0|^2`, `|u1 - u0|^2` counts as zero: the two fits are the same
/// up to rounding and no alpha is better than another.
pub const DEGENERATE_TOLERANCE: f64 = 1e-12;

/// The ground-truth weight of the paper's Algorithm 1 at one step,
///
/// `alpha = <r - u0, u1 - u0> / |u1 - u0|^2`,
///
/// summed over every `(r, u1, u0)` triple (points times outputs), with `r` the reference
/// targets, `u1` the first fit's outputs and `u0` the outputs of the student trained on its
/// teacher alone (`alpha = 0`). It minimises `|r - (alpha u1 + (1 - alpha) u0)|^2`: the student
/// trained with weight `alpha` is that mixture, exactly so for kernel ridge regression (a fit is
/// linear in its targets) and as an approximation for networks.
///
/// Not clamped: the optimum may lie outside `[0, 1]`, and the caller decides. `None` when
/// `|u1 - u0|^2` is at most [`DEGENERATE_TOLERANCE`] times `|u1|^2 + |u0|^2` (the fits coincide,
/// every alpha gives the same mixture) or the sums are not finite; Algorithm 1 then takes
/// [`DEGENERATE_ALPHA`] ([`optimal_or_degenerate`]).
pub fn optimal_alpha(values: impl IntoIterator<Item = (f64, f64, f64)>) -> Option<f64> {
    let (mut numerator, mut denominator, mut scale) = (0.0f64, 0.0f64, 0.0f64);
    for (r, u1, u0) in values {
        let direction = u1 - u0;
        numerator += (r - u0) * direction;
        denominator += direction * direction;
        scale += u1 * u1 + u0 * u0;
    }
    let alpha = numerator / denominator;
    (denominator > DEGENERATE_TOLERANCE * scale && alpha.is_finite()).then_some(alpha)
}

/// The alpha Algorithm 1 takes where [`optimal_alpha`] has none (the first fit and the
/// teacher-only student coincide, so every alpha gives the same student): 1, the first fit's own
/// weight. The one rule of both halves, kernels and networks.
pub const DEGENERATE_ALPHA: f64 = 1.0;

/// Algorithm 1's alpha at a step from [`optimal_alpha`]'s answer: the optimum, or
/// [`DEGENERATE_ALPHA`] where there is none. Not clamped.
pub fn optimal_or_degenerate(optimal: Option<f64>) -> f64 {
    optimal.unwrap_or(DEGENERATE_ALPHA)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triples<'a>(r: &'a [f64], u1: &'a [f64], u0: &'a [f64]) -> Vec<(f64, f64, f64)> {
        r.iter()
            .zip(u1)
            .zip(u0)
            .map(|((&r, &a), &b)| (r, a, b))
            .collect()
    }

    #[test]
    fn optimal_alpha_by_hand() {
        // Image 1 (class 0): r - u0 = (0.7, -0.7), u1 - u0 = (0.6, -0.6): 0.84 over 0.72.
        // Image 2 (class 1): r - u0 = (-0.4, 0.4), u1 - u0 = (0.3, -0.3): -0.24 over 0.18.
        // alpha = (0.84 - 0.24) / (0.72 + 0.18) = 2/3.
        let r = [1.0, 0.0, 0.0, 1.0];
        let u1 = [0.9, 0.1, 0.7, 0.3];
        let u0 = [0.3, 0.7, 0.4, 0.6];
        let alpha = optimal_alpha(triples(&r, &u1, &u0)).unwrap();
        assert!((alpha - 2.0 / 3.0).abs() < 1e-12, "{alpha}");
        // It minimises |r - (a u1 + (1 - a) u0)|^2.
        let misfit = |a: f64| -> f64 {
            (0..4)
                .map(|i| (r[i] - (a * u1[i] + (1.0 - a) * u0[i])).powi(2))
                .sum()
        };
        assert!(misfit(alpha) < misfit(alpha - 0.01) && misfit(alpha) < misfit(alpha + 0.01));
        // Not clamped: a first fit right where the zero-alpha student is wrong, by less than the
        // truth, asks for more than the ground truth.
        let far = optimal_alpha(triples(&[1.0, 0.0], &[0.6, 0.4], &[0.2, 0.8])).unwrap();
        assert!((far - 2.0).abs() < 1e-12, "{far}");
    }

    #[test]
    fn coinciding_fits_have_no_optimum_at_any_scale() {
        let r = [1.0, 0.0, 0.0, 1.0];
        let u = [0.9, 0.1, 0.7, 0.3];
        assert_eq!(optimal_alpha(triples(&r, &u, &u)), None);
        assert_eq!(
            optimal_alpha(triples(&[0.0; 3], &[0.0; 3], &[0.0; 3])),
            None
        );
        // Rounding-level differences count as none; tiny but real differences at a tiny scale
        // (kernel predictions of targets near 1e-9) still give an optimum.
        let nudged: Vec<f64> = u.iter().map(|v| v * (1.0 + 1e-15)).collect();
        assert_eq!(optimal_alpha(triples(&r, &u, &nudged)), None);
        let tiny = |v: &[f64]| -> Vec<f64> { v.iter().map(|x| x * 1e-9).collect() };
        let scaled = optimal_alpha(triples(&tiny(&r), &tiny(&u), &tiny(&[0.3, 0.7, 0.4, 0.6])));
        let unscaled = optimal_alpha(triples(&r, &u, &[0.3, 0.7, 0.4, 0.6]));
        assert!((scaled.unwrap() - unscaled.unwrap()).abs() < 1e-9);
        assert_eq!(optimal_alpha(triples(&[f64::NAN], &[1.0], &[0.0])), None);
        assert_eq!(optimal_alpha(std::iter::empty()), None);
        // Algorithm 1 then takes the first fit's own weight; an optimum stays as it is.
        assert_eq!(
            optimal_or_degenerate(optimal_alpha(triples(&r, &u, &u))),
            1.0
        );
        assert_eq!(optimal_or_degenerate(Some(-0.62)), -0.62);
    }

    #[test]
    fn alpha_text_and_serde_round_trip() {
        for (text, alpha) in [
            ("0", Alpha::Fixed(0.0)),
            ("0.25", Alpha::Fixed(0.25)),
            ("1", Alpha::Fixed(1.0)),
            ("auto", Alpha::Auto),
        ] {
            assert_eq!(text.parse::<Alpha>().unwrap(), alpha);
            assert_eq!(alpha.to_string(), text);
        }
        assert_eq!("AUTO".parse::<Alpha>().unwrap(), Alpha::Auto);
        for bad in ["1.5", "-0.1", "NaN", "often", ""] {
            let err = bad.parse::<Alpha>().unwrap_err();
            assert!(err.to_string().contains("[0, 1] or 'auto'"), "{err}");
        }
        assert!(Alpha::new(f64::NAN).is_err() && Alpha::new(2.0).is_err());
        let json = serde_json::to_string(&[Alpha::Fixed(0.5), Alpha::Auto]).unwrap();
        assert_eq!(json, r#"[0.5,"auto"]"#);
        let back: Vec<Alpha> = serde_json::from_str(r#"[0.5, "auto", 1, "0.25"]"#).unwrap();
        assert_eq!(
            back,
            [
                Alpha::Fixed(0.5),
                Alpha::Auto,
                Alpha::Fixed(1.0),
                Alpha::Fixed(0.25)
            ]
        );
        let err = serde_json::from_str::<Alpha>("1.5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside [0, 1]"), "{err}");
        let err = serde_json::from_str::<Alpha>(r#""often""#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"often\""), "{err}");
    }
}

// The README's examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
