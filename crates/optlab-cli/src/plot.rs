//! PNG line charts (plotters, bitmap backend, an embedded DejaVu Sans font so no system font is needed).

use anyhow::{Context, Result};
pub use optlab::experiment::report::run_charts;
pub use optlab::experiment::{Chart, Series};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

pub fn register_font() {
    REGISTER.call_once(|| {
        // DejaVu Sans, Bitstream Vera licence (assets/DejaVuSans-COPYRIGHT.txt).
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A distinct colour for series `i` of `n`: Tableau's ten for up to ten series, Kelly's twenty colours of
/// maximum contrast (darkest first) for up to twenty, evenly spaced hues beyond.
pub fn colour(i: usize, n: usize) -> RGBColor {
    const TABLEAU: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    const KELLY: [RGBColor; 20] = [
        RGBColor(0x00, 0x67, 0xA5),
        RGBColor(0xBE, 0x00, 0x32),
        RGBColor(0x00, 0x88, 0x56),
        RGBColor(0xF3, 0x84, 0x00),
        RGBColor(0x87, 0x56, 0x92),
        RGBColor(0x88, 0x2D, 0x17),
        RGBColor(0xE6, 0x8F, 0xAC),
        RGBColor(0x84, 0x84, 0x82),
        RGBColor(0x8D, 0xB6, 0x00),
        RGBColor(0x2B, 0x3D, 0x26),
        RGBColor(0xA1, 0xCA, 0xF1),
        RGBColor(0xB3, 0x44, 0x6C),
        RGBColor(0x60, 0x4E, 0x97),
        RGBColor(0xF6, 0xA6, 0x00),
        RGBColor(0xE2, 0x58, 0x22),
        RGBColor(0xC2, 0xB2, 0x80),
        RGBColor(0x65, 0x45, 0x22),
        RGBColor(0xF9, 0x93, 0x79),
        RGBColor(0xDC, 0xD3, 0x00),
        RGBColor(0xF3, 0xC3, 0x00),
    ];
    if n <= TABLEAU.len() {
        return TABLEAU[i % TABLEAU.len()];
    }
    if n <= KELLY.len() {
        return KELLY[i];
    }
    let c = HSLColor(
        i as f64 / n as f64,
        0.75,
        if i.is_multiple_of(2) { 0.38 } else { 0.55 },
    )
    .to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// Width of the legend column to the right of the plot.
const LEGEND_WIDTH: u32 = 360;

/// Draws a chart into `dir/chart.file` (a chart with nothing to show is skipped).
pub fn draw(dir: &Path, chart: &Chart) -> Result<()> {
    if !chart.has_points() {
        return Ok(());
    }
    let path = dir.join(&chart.file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    line_chart(
        &path,
        &chart.title,
        &chart.x_label,
        &chart.y_label,
        &chart.series,
        chart.log_y,
    )
}

/// Draws `series` as lines into a PNG, the legend in its own column to the right so it never covers a curve;
/// `log_y` uses a log10 y axis (non-positive values dropped).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> Result<()> {
    register_font();
    let tf = |y: f64| if log_y { y.log10() } else { y };
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
        .collect();
    anyhow::ensure!(!pts.is_empty(), "nothing to plot for {}", path.display());
    let (x0, x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(tf(p.1)), b.max(tf(p.1)))
    });
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let legend = series.len() > 1 || series.iter().any(|s| !s.name.is_empty());
    let height = 560u32.max(90 + 22 * series.len() as u32);
    let width = 900 + if legend { LEGEND_WIDTH } else { 0 };
    // Drawn beside the target and renamed over it, so a reader never sees half a picture.
    let tmp = optlab::tensor_io::temp_beside(path);
    let root = BitMapBackend::new(&tmp, (width, height)).into_drawing_area();
    root.fill(&WHITE).context("drawing")?;
    let (plot_area, legend_area) = root.split_horizontally(900);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .context("chart")?;
    // On a log axis the ticks are placed in log10 space but labelled with the values themselves.
    let tick = |v: &f64| {
        if log_y {
            significant(10f64.powf(*v))
        } else {
            significant(*v)
        }
    };
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(if log_y {
            format!("{y_label} (log scale)")
        } else {
            y_label.to_string()
        })
        .y_label_formatter(&tick)
        .label_style(("sans-serif", 15))
        .draw()
        .context("mesh")?;
    let n = series.len();
    for (i, s) in series.iter().enumerate() {
        let color = colour(i, n);
        let line: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
            .map(|&(x, y)| (x, tf(y)))
            .collect();
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .context("series")?;
    }
    if legend {
        let font = ("sans-serif", 14).into_font().color(&BLACK);
        for (i, s) in series.iter().enumerate() {
            let y = 60 + 22 * i as i32;
            let color = colour(i, n);
            legend_area
                .draw(&PathElement::new(
                    vec![(8, y), (34, y)],
                    color.stroke_width(3),
                ))
                .context("legend")?;
            // Long specs are cut to the column's width.
            let name: String = if s.name.chars().count() > 44 {
                s.name.chars().take(43).chain(['…']).collect()
            } else {
                s.name.clone()
            };
            legend_area
                .draw(&Text::new(name, (40, y - 8), font.clone()))
                .context("legend")?;
        }
    }
    let presented = root.present().map_err(anyhow::Error::from);
    drop(chart);
    drop(root);
    publish(presented, &tmp, path)
}

/// Renames the drawn temporary file over `path` once the drawing is presented, or removes it.
fn publish(presented: Result<()>, tmp: &Path, path: &Path) -> Result<()> {
    let done = presented.and_then(|_| std::fs::rename(tmp, path).map_err(anyhow::Error::from));
    if done.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    done.with_context(|| format!("cannot write {}", path.display()))
}

/// `x` to four significant digits, without trailing zeros (scientific outside [1e-3, 1e4)).
fn significant(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    if !(1e-3..1e4).contains(&x.abs()) {
        return format!("{x:.3e}");
    }
    let decimals = (3 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Writes a run directory's own charts (`plots/loss.png`, `plots/accuracy.png`).
pub fn plot_run(run_dir: &Path) -> Result<()> {
    for c in run_charts(run_dir)? {
        draw(run_dir, &c)?;
    }
    Ok(())
}

/// Draws square grey-scale images (row-major `side`×`side` values, clamped to [0, 1], white = 1) in one row, each
/// scaled up by `scale` pixels per value and captioned with its label.
pub fn image_row(
    path: &Path,
    images: &[Vec<f64>],
    side: usize,
    scale: u32,
    labels: &[String],
) -> Result<()> {
    register_font();
    anyhow::ensure!(!images.is_empty(), "no images to draw");
    let cell = side as u32 * scale;
    let gap = 8u32;
    let caption = 22u32;
    let width = images.len() as u32 * (cell + gap) + gap;
    let height = cell + 2 * gap + caption;
    let tmp = optlab::tensor_io::temp_beside(path);
    let root = BitMapBackend::new(&tmp, (width, height)).into_drawing_area();
    root.fill(&WHITE).context("drawing")?;
    let font = ("sans-serif", 16).into_font().color(&BLACK);
    for (k, img) in images.iter().enumerate() {
        anyhow::ensure!(
            img.len() == side * side,
            "image {k} has {} values, not {side}x{side}",
            img.len()
        );
        let x0 = (gap + k as u32 * (cell + gap)) as i32;
        let y0 = gap as i32;
        for (i, v) in img.iter().enumerate() {
            let level = (255.0 * v.clamp(0.0, 1.0)).round() as u8;
            let (r, c) = ((i / side) as i32, (i % side) as i32);
            let s = scale as i32;
            root.draw(&Rectangle::new(
                [
                    (x0 + c * s, y0 + r * s),
                    (x0 + (c + 1) * s, y0 + (r + 1) * s),
                ],
                RGBColor(level, level, level).filled(),
            ))
            .context("drawing")?;
        }
        if let Some(l) = labels.get(k) {
            root.draw(&Text::new(
                l.clone(),
                (x0 + cell as i32 / 2 - 5, y0 + cell as i32 + 4),
                font.clone(),
            ))
            .context("drawing")?;
        }
    }
    let presented = root.present().map_err(anyhow::Error::from);
    drop(root);
    publish(presented, &tmp, path)
}

/// Draws point clouds (the first two coordinates) into a square PNG, one colour per cloud, a legend below the
/// title.
pub fn scatter(path: &Path, title: &str, clouds: &[Series]) -> Result<()> {
    register_font();
    let pts: Vec<(f64, f64)> = clouds
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    anyhow::ensure!(!pts.is_empty(), "nothing to plot for {}", path.display());
    let lo = pts.iter().fold(f64::MAX, |m, p| m.min(p.0).min(p.1));
    let hi = pts.iter().fold(f64::MIN, |m, p| m.max(p.0).max(p.1));
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let (lo, hi) = (lo - pad, hi + pad);
    let tmp = optlab::tensor_io::temp_beside(path);
    let root = BitMapBackend::new(&tmp, (760, 760)).into_drawing_area();
    root.fill(&WHITE).context("drawing")?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(lo..hi, lo..hi)
        .context("chart")?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_label_formatter(&|v: &f64| significant(*v))
        .y_label_formatter(&|v: &f64| significant(*v))
        .label_style(("sans-serif", 14))
        .draw()
        .context("mesh")?;
    let n = clouds.len();
    for (i, s) in clouds.iter().enumerate() {
        let color = colour(i, n);
        chart
            .draw_series(
                s.points
                    .iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|&p| Circle::new(p, 2, color.mix(0.5).filled())),
            )
            .context("points")?
            .label(s.name.clone())
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .context("legend")?;
    let presented = root.present().map_err(anyhow::Error::from);
    drop(chart);
    drop(root);
    publish(presented, &tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_series_gets_its_own_colour() {
        for n in [5, 13, 20, 30] {
            let c: Vec<_> = (0..n).map(|i| super::colour(i, n)).collect();
            for i in 0..n {
                for j in 0..i {
                    assert_ne!(c[i], c[j], "{n} series: {i} and {j}");
                }
            }
        }
    }

    #[test]
    fn log_axis_labels() {
        let cases = [
            (1.4791083881682074, "1.479"),
            (2.0, "2"),
            (0.123456, "0.1235"),
            (12.5, "12.5"),
            (2.5e-5, "2.500e-5"),
            (0.0, "0"),
        ];
        for (x, want) in cases {
            assert_eq!(super::significant(x), want, "{x}");
        }
    }
}
