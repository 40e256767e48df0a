//! The figures of the original notebook, as PNG and SVG, drawn with plotters.
//!
//! - `fit`: every step's fit, the limit dashed, the training points as crosses (one feature only);
//! - `b_diag`: the diagonal of `B(t)` per step as overlapping bars, the limit outlined;
//! - `ratios`: `R_k = b_k / b_(k+1)` per step.
//!
//! And the networks' figure of the paper's experiments ([`write_accuracy_figure`]): test accuracy
//! against the distillation step, one line per alpha, with error bars.
//!
//! Text is rendered with a font shipped in the binary (a subset of DejaVu Sans), so the figures
//! look the same on every machine and need no system fonts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use sd_train::files::write_set;

use crate::error::{Error, Result};
use crate::krr::KrrReport;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 560);
/// At most this many eigen-directions are drawn in the `B` and `R_k` figures (the leading ones).
pub const MAX_DIRECTIONS: usize = 40;

fn register_font(path: &Path) -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if registered {
        Ok(())
    } else {
        Err(Error::Plot {
            path: path.to_path_buf(),
            message: "the embedded font is invalid".into(),
        })
    }
}

/// Matplotlib's viridis at `t` in `[0, 1]` (plotters' colour map).
fn viridis(t: f64) -> RGBColor {
    ViridisRGB::get_color(t.clamp(0.0, 1.0))
}

/// Colour of step `index` (0-based) of `count`, dark purple to light green as in the original.
fn step_color(index: usize, count: usize) -> RGBColor {
    if count <= 1 {
        viridis(0.0)
    } else {
        viridis(0.85 * index as f64 / (count - 1) as f64)
    }
}

/// Whether step `index` of `count` gets a legend entry: all of them up to 10 steps, else about 8.
fn labelled(index: usize, count: usize) -> bool {
    count <= 10 || index == count - 1 || index.is_multiple_of(count.div_ceil(8))
}

fn superscript(n: usize) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    n.to_string()
        .chars()
        .map(|c| DIGITS[c.to_digit(10).expect("a digit") as usize])
        .collect()
}

fn subscript(n: usize) -> String {
    n.to_string()
        .chars()
        .map(|c| char::from_u32(0x2080 + c.to_digit(10).expect("a digit")).expect("a subscript"))
        .collect()
}

fn b_label(step: usize) -> String {
    format!("B⁽{}⁾", superscript(step))
}

type DrawResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn boxed<E: std::error::Error + Send + Sync + 'static>(
    err: DrawingAreaErrorKind<E>,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(err)
}

fn padded(low: f64, high: f64, fraction: f64) -> std::ops::Range<f64> {
    let span = if high > low { high - low } else { 1.0 };
    (low - fraction * span)..(high + fraction * span)
}

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().into()
}

/// The legend of every figure: the series labels in a translucent box.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(font(17))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(boxed)
}

/// The fit of every step on the grid, the limit dashed, the training data as crosses.
fn draw_fit<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &KrrReport,
    output: usize,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let curves = report.curves.as_ref().expect("checked by the caller");
    root.fill(&WHITE).map_err(boxed)?;
    let mut values: Vec<f64> = curves.train_y[output].clone();
    for step in &curves.steps {
        values.extend(&step[output]);
    }
    if let Some(limit) = &curves.limit {
        values.extend(&limit[output]);
    }
    let (low, high) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let x_range = padded(curves.grid[0], *curves.grid.last().expect("a grid"), 0.03);
    let target = &report.target_names[output];
    let mut chart = ChartBuilder::on(root)
        .margin(18)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, padded(low, high, 0.08))
        .map_err(boxed)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .label_style(font(18))
        .axis_desc_style(font(20))
        .x_desc("x")
        .y_desc(target.as_str())
        .draw()
        .map_err(boxed)?;
    let count = curves.steps.len();
    for (index, step) in curves.steps.iter().enumerate() {
        let color = step_color(index, count);
        let style = color.stroke_width(3);
        let series = chart
            .draw_series(LineSeries::new(
                curves
                    .grid
                    .iter()
                    .copied()
                    .zip(step[output].iter().copied()),
                style,
            ))
            .map_err(boxed)?;
        if labelled(index, count) {
            series
                .label(format!("f{}", subscript(index)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
    }
    if let Some(limit) = &curves.limit {
        let style = BLACK.stroke_width(3);
        chart
            .draw_series(DashedLineSeries::new(
                curves
                    .grid
                    .iter()
                    .copied()
                    .zip(limit[output].iter().copied()),
                9,
                6,
                style,
            ))
            .map_err(boxed)?
            .label("f∞")
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (9, 0)], style)
                    + PathElement::new(vec![(15, 0), (24, 0)], style)
            });
    }
    chart
        .draw_series(
            curves
                .train_x
                .iter()
                .zip(&curves.train_y[output])
                .map(|(&x, &y)| Cross::new((x, y), 6, BLACK.stroke_width(3))),
        )
        .map_err(boxed)?
        .label("training data")
        .legend(|(x, y)| Cross::new((x + 12, y), 5, BLACK.stroke_width(3)));
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present().map_err(boxed)?;
    Ok(())
}

/// The diagonals of `B(t)` as overlapping bars (taller behind), the limit as an outline.
fn draw_b_diag<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, report: &KrrReport) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(boxed)?;
    let diagonals: Vec<&Vec<f64>> = report
        .steps
        .iter()
        .map(|s| s.b_diag.as_ref().expect("checked by the caller"))
        .collect();
    let n = diagonals[0].len();
    let shown = n.min(MAX_DIRECTIONS);
    let limit = report.limit.as_ref().and_then(|l| l.b_diag.as_ref());
    let top = diagonals
        .iter()
        .flat_map(|d| d[..shown].iter())
        .chain(limit.into_iter().flat_map(|d| d[..shown].iter()))
        .fold(0.0f64, |m, &v| m.max(v));
    let mut chart = ChartBuilder::on(root)
        .margin(18)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.4f64..shown as f64 + 0.6, 0.0..(top * 1.12).max(1e-12))
        .map_err(boxed)?;
    let x_desc = if shown < n {
        format!("k (eigen-direction, by descending eigenvalue; leading {shown} of {n})")
    } else {
        "k (eigen-direction, by descending eigenvalue)".to_string()
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .label_style(font(18))
        .axis_desc_style(font(20))
        .x_desc(x_desc)
        .y_desc("diagonal of B")
        .x_labels(shown.min(20))
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .draw()
        .map_err(boxed)?;
    let count = diagonals.len();
    // Draw taller bars first so that every step stays visible where the order changes.
    let mut bars = Vec::new();
    for k in 0..shown {
        let mut heights: Vec<(usize, f64)> = diagonals.iter().map(|d| d[k]).enumerate().collect();
        heights.sort_by(|a, b| b.1.total_cmp(&a.1));
        bars.extend(heights.into_iter().map(|(index, value)| (k, index, value)));
    }
    chart
        .draw_series(bars.iter().flat_map(|&(k, index, value)| {
            let x = (k + 1) as f64;
            let corners = [(x - 0.4, 0.0), (x + 0.4, value)];
            [
                Rectangle::new(corners, step_color(index, count).filled()),
                Rectangle::new(corners, BLACK.mix(0.6).stroke_width(1)),
            ]
        }))
        .map_err(boxed)?;
    for index in 0..count {
        if labelled(index, count) {
            let color = step_color(index, count);
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(boxed)?
                .label(b_label(index))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 18, y + 6)], color.filled())
                });
        }
    }
    if let Some(limit) = limit {
        let style = BLACK.stroke_width(2);
        chart
            .draw_series(limit[..shown].iter().enumerate().map(|(k, &value)| {
                let x = (k + 1) as f64;
                Rectangle::new([(x - 0.45, 0.0), (x + 0.45, value)], style)
            }))
            .map_err(boxed)?
            .label("B⁽∞⁾ (limit)")
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], style));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(boxed)?;
    Ok(())
}

/// `R_k = b_k / b_(k+1)` against `k`, one line per step; a log scale when they span a decade.
fn draw_ratios<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, report: &KrrReport) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(boxed)?;
    let ratios = report.ratios().expect("checked by the caller");
    let shown = ratios[0].len().clamp(1, MAX_DIRECTIONS - 1);
    let finite: Vec<f64> = ratios
        .iter()
        .flat_map(|r| r.iter().take(shown))
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let (low, high) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let (low, high) = if finite.is_empty() {
        (1.0, 2.0)
    } else {
        (low, high)
    };
    let count = ratios.len();
    let x_range = 0.7f64..shown as f64 + 0.3;
    let series = |index: usize| -> Vec<(f64, f64)> {
        ratios[index]
            .iter()
            .take(shown)
            .enumerate()
            .filter(|(_, v)| v.is_finite() && **v > 0.0)
            .map(|(k, &v)| ((k + 1) as f64, v))
            .collect()
    };
    macro_rules! draw_lines {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .disable_mesh()
                .label_style(font(18))
                .axis_desc_style(font(20))
                .x_desc("k")
                .y_desc("Rₖ = bₖ / bₖ₊₁")
                .x_labels(shown.min(20))
                .x_label_formatter(&|x| format!("{}", x.round() as i64))
                .draw()
                .map_err(boxed)?;
            for index in 0..count {
                let style = step_color(index, count).stroke_width(3);
                let drawn = chart
                    .draw_series(LineSeries::new(series(index), style))
                    .map_err(boxed)?;
                if labelled(index, count) {
                    drawn
                        .label(b_label(index))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
                }
            }
            legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }};
    }
    let builder = || {
        let mut builder = ChartBuilder::on(root);
        builder
            .margin(18)
            .x_label_area_size(44)
            .y_label_area_size(92);
        builder
    };
    if high > 10.0 * low {
        draw_lines!(
            builder()
                .build_cartesian_2d(x_range, (low * 0.9..high * 1.1).log_scale())
                .map_err(boxed)?
        );
    } else {
        let pad = 0.05 * (high - low).max(1e-3);
        draw_lines!(
            builder()
                .build_cartesian_2d(x_range, (low - pad)..(high + pad))
                .map_err(boxed)?
        );
    }
    root.present().map_err(boxed)?;
    Ok(())
}

/// A figure rendered in memory: file names and bytes.
type Rendered = Vec<(String, Vec<u8>)>;

/// Draws one figure as `<name>.png` and `<name>.svg`, in memory (`dir` only names the files in
/// errors).
fn figure(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    draw_png: impl Fn(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
    draw_svg: impl Fn(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> Result<Rendered> {
    let png = dir.join(format!("{name}.png"));
    register_font(&png)?;
    let failed = |path: &Path, message: String| Error::Plot {
        path: path.to_path_buf(),
        message,
    };
    let mut pixels = vec![0u8; 3 * size.0 as usize * size.1 as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw_png(&root).map_err(|e| failed(&png, e.to_string()))?;
    }
    let image = image::RgbImage::from_raw(size.0, size.1, pixels)
        .ok_or_else(|| failed(&png, "the bitmap has the wrong size".into()))?;
    let mut png_bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png_bytes, image::ImageOutputFormat::Png)
        .map_err(|e| failed(&png, e.to_string()))?;
    let svg = dir.join(format!("{name}.svg"));
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw_svg(&root).map_err(|e| failed(&svg, e.to_string()))?;
    }
    Ok(vec![
        (format!("{name}.png"), png_bytes.into_inner()),
        (format!("{name}.svg"), text.into_bytes()),
    ])
}

/// Whether a file name is one of [`write_figures`]' figures (a damaged list names nothing else).
fn is_krr_figure(name: &str) -> bool {
    let Some((stem, extension)) = name.rsplit_once('.') else {
        return false;
    };
    matches!(extension, "png" | "svg")
        && (stem == "fit" || stem.starts_with("fit_") || stem == "b_diag" || stem == "ratios")
}

/// Writes the report's figures into `dir` (created if needed) and returns their paths.
///
/// The fit figure needs one feature column (the grid curves of the report); the `B` and ratio
/// figures need the spectrum (the eigen route). Figures that cannot be drawn are skipped with a
/// warning.
///
/// The set is written as a whole: every figure is drawn first and written to a temporary file,
/// and only then are they renamed into place and the figures of the earlier set written here
/// that this one lacks removed (other files in `dir` are left alone). A failure on the way
/// leaves the earlier set as it was.
pub fn write_figures(report: &KrrReport, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut rendered = Rendered::new();
    match &report.curves {
        Some(_) => {
            for (output, target) in report.target_names.iter().enumerate() {
                let name = if report.target_names.len() == 1 {
                    "fit".to_string()
                } else {
                    format!("fit_{}", sanitize(target))
                };
                rendered.extend(figure(
                    dir,
                    &name,
                    SIZE,
                    |root| draw_fit(root, report, output),
                    |root| draw_fit(root, report, output),
                )?);
            }
        }
        None => tracing::warn!(
            features = report.n_features,
            "the fit figure needs exactly one feature column; skipped"
        ),
    }
    if report.steps.iter().all(|s| s.b_diag.is_some()) {
        rendered.extend(figure(
            dir,
            "b_diag",
            SIZE,
            |root| draw_b_diag(root, report),
            |root| draw_b_diag(root, report),
        )?);
        if report.n_train >= 2 {
            rendered.extend(figure(
                dir,
                "ratios",
                SIZE,
                |root| draw_ratios(root, report),
                |root| draw_ratios(root, report),
            )?);
        }
    } else {
        tracing::warn!("the B and ratio figures need the eigen route; skipped");
    }
    let written = write_set(dir, &rendered)?;
    // The figures the last set wrote (listed in `.sd-figures`) that this one lacks go; nothing
    // else in `dir` is touched. The list is written last, so a kill before it leaves the old
    // list, and the next set finishes the removal.
    let manifest = dir.join(FIGURE_LIST);
    let earlier = match std::fs::read_to_string(&manifest) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(&manifest)(e)),
    };
    for name in earlier.lines().map(str::trim) {
        if is_krr_figure(name) && !rendered.iter().any(|(n, _)| n == name) {
            let path = dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path)(e)),
            }
        }
    }
    let list: String = rendered.iter().map(|(n, _)| format!("{n}\n")).collect();
    sd_train::files::write_atomic(&manifest, list.as_bytes())?;
    Ok(written)
}

/// The list of the figures [`write_figures`] last wrote into a directory.
const FIGURE_LIST: &str = ".sd-figures";

/// One line of the accuracy figure: `(step, mean, standard deviation)` per point.
#[derive(Debug, Clone)]
pub struct AccuracySeries {
    /// The legend entry, e.g. `α = 0.25`.
    pub label: String,
    /// Points in step order; the deviation is drawn as an error bar when > 0.
    pub points: Vec<(usize, f64, f64)>,
    /// Where the line sits on the colour scale, in `[0, 1]` (the alpha); `None` draws it red and
    /// dashed (the automatic alpha).
    pub shade: Option<f64>,
}

fn draw_accuracy<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[AccuracySeries],
    y_label: &str,
    caption: Option<&str>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(boxed)?;
    let root = match caption {
        Some(caption) => root.titled(caption, font(22)).map_err(boxed)?,
        None => root.clone(),
    };
    let root = &root;
    let (mut low, mut high, mut last_step) = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
    for s in series {
        for &(step, mean, std) in &s.points {
            low = low.min(mean - std);
            high = high.max(mean + std);
            last_step = last_step.max(step);
        }
    }
    if !low.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    let x_range = -0.3..(last_step as f64 + 0.3);
    let mut chart = ChartBuilder::on(root)
        .margin(18)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, padded(low, high, 0.1))
        .map_err(boxed)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.08))
        .x_labels(last_step + 1)
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .label_style(font(18))
        .axis_desc_style(font(20))
        .x_desc("distillation step")
        .y_desc(y_label)
        .draw()
        .map_err(boxed)?;
    // Each line is shifted a little sideways so that error bars at one step do not overlap.
    let dodge = |index: usize| 0.035 * (index as f64 - (series.len() as f64 - 1.0) / 2.0);
    for (index, s) in series.iter().enumerate() {
        let color = match s.shade {
            Some(t) => viridis(0.9 * t),
            None => RGBColor(214, 39, 40),
        };
        let style = color.stroke_width(3);
        let shift = dodge(index);
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|&(x, m, _)| (x as f64 + shift, m))
            .collect();
        let drawn = match s.shade {
            Some(_) => chart.draw_series(LineSeries::new(points.clone(), style)),
            None => chart.draw_series(DashedLineSeries::new(points.clone(), 10, 6, style)),
        }
        .map_err(boxed)?;
        drawn
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(boxed)?;
        // Error bars: a vertical line from mean - std to mean + std.
        chart
            .draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|&(x, m, d)| {
                PathElement::new(
                    vec![(x as f64 + shift, m - d), (x as f64 + shift, m + d)],
                    color.stroke_width(2),
                )
            }))
            .map_err(boxed)?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present().map_err(boxed)?;
    Ok(())
}

/// Writes `<dir>/<name>.png` and `.svg`: each series' mean against the step, with error bars of
/// one standard deviation (over seeds). Returns the paths.
pub fn write_accuracy_figure(
    dir: &Path,
    name: &str,
    series: &[AccuracySeries],
    y_label: &str,
) -> Result<Vec<PathBuf>> {
    let rendered = figure(
        dir,
        name,
        SIZE,
        |root| draw_accuracy(root, series, y_label, None),
        |root| draw_accuracy(root, series, y_label, None),
    )?;
    Ok(write_set(dir, &rendered)?)
}

/// Writes `<dir>/<name>.png` and `.svg`: panels side by side, each titled and drawn as
/// [`write_accuracy_figure`] draws its one (the kernel study: one panel per label-noise level).
/// Returns the paths.
pub fn write_panels_figure(
    dir: &Path,
    name: &str,
    panels: &[(String, Vec<AccuracySeries>)],
    y_label: &str,
) -> Result<Vec<PathBuf>> {
    fn draw<DB: DrawingBackend>(
        root: &DrawingArea<DB, Shift>,
        panels: &[(String, Vec<AccuracySeries>)],
        y_label: &str,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(boxed)?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, (title, series)) in areas.iter().zip(panels) {
            draw_accuracy(area, series, y_label, Some(title))?;
        }
        root.present().map_err(boxed)?;
        Ok(())
    }
    let size = (SIZE.0 * panels.len().max(1) as u32 * 4 / 5, SIZE.1);
    let rendered = figure(
        dir,
        name,
        size,
        |root| draw(root, panels, y_label),
        |root| draw(root, panels, y_label),
    )?;
    Ok(write_set(dir, &rendered)?)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_colours() {
        assert_eq!(b_label(12), "B⁽¹²⁾");
        assert_eq!(subscript(10), "₁₀");
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(254, 232, 37));
        assert!((0..6).all(|i| labelled(i, 6)));
        assert_eq!((0..40).filter(|&i| labelled(i, 40)).count(), 9);
        assert_eq!(sanitize("y 1/2"), "y_1_2");
    }

    #[test]
    fn the_accuracy_figure_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let series = [
            AccuracySeries {
                label: "α = 0".into(),
                points: vec![(0, 80.0, 1.0), (1, 81.5, 0.5)],
                shade: Some(0.0),
            },
            AccuracySeries {
                label: "α = auto".into(),
                points: vec![(0, 80.0, 0.0), (1, 82.0, 0.0)],
                shade: None,
            },
        ];
        let written =
            write_accuracy_figure(dir.path(), "accuracy", &series, "accuracy (%)").unwrap();
        assert_eq!(written.len(), 2);
        let png = std::fs::read(&written[0]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(&written[1]).unwrap();
        assert!(
            svg.contains("α = auto") && svg.contains("distillation step"),
            "{svg}"
        );
    }
}
