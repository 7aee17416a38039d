//! PNG line charts (plotters, bitmap backend, an embedded DejaVu Sans font so no system font is needed).

use anyhow::{Context, Result};
use optlab::train::{read_metrics, Record};
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

/// One named curve.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(0, 0, 0),
    RGBColor(255, 187, 120),
];

/// Draws `series` as lines into a 900x560 PNG; `log_y` uses a log10 y axis (non-positive values dropped).
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
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).context("drawing")?;
    let mut chart = ChartBuilder::on(&root)
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
            format!("{v}")
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
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let line: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
            .map(|&(x, y)| (x, tf(y)))
            .collect();
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .context("series")?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        // Losses fall and accuracies rise: keep the legend in the corner the curves leave empty.
        .position(if log_y {
            SeriesLabelPosition::UpperRight
        } else {
            SeriesLabelPosition::LowerRight
        })
        .draw()
        .context("legend")?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
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

/// Exponential moving average (for noisy mini-batch losses).
pub fn smooth(points: &[(f64, f64)], beta: f64) -> Vec<(f64, f64)> {
    let mut avg = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            avg = beta * avg + (1.0 - beta) * y;
            (x, avg / (1.0 - beta.powi(i as i32 + 1)))
        })
        .collect()
}

/// The curves of one run directory, read from its metrics.jsonl.
pub struct RunCurves {
    pub train_loss: Vec<(f64, f64)>,
    pub val_loss: Vec<(f64, f64)>,
    pub val_accuracy: Vec<(f64, f64)>,
}

pub fn run_curves(run_dir: &Path) -> Result<RunCurves> {
    let recs = read_metrics(&run_dir.join("metrics.jsonl"))?;
    let mut c = RunCurves {
        train_loss: vec![],
        val_loss: vec![],
        val_accuracy: vec![],
    };
    for r in recs {
        match r {
            Record::Train(m) => c.train_loss.push((m.step as f64, m.loss)),
            Record::Eval(e) => {
                if let Some(v) = e.val_loss {
                    c.val_loss.push((e.step as f64, v));
                }
                if let Some(a) = e.val_accuracy {
                    c.val_accuracy.push((e.step as f64, a));
                }
            }
        }
    }
    Ok(c)
}

/// Writes `plots/loss.png` and (for classification) `plots/accuracy.png` into a run directory.
pub fn plot_run(run_dir: &Path) -> Result<()> {
    let c = run_curves(run_dir)?;
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut loss = vec![Series {
        name: "train (smoothed)".into(),
        points: smooth(&c.train_loss, 0.9),
    }];
    if !c.val_loss.is_empty() {
        loss.push(Series {
            name: "validation".into(),
            points: c.val_loss,
        });
    }
    line_chart(&dir.join("loss.png"), "Loss", "step", "loss", &loss, true)?;
    if !c.val_accuracy.is_empty() {
        let acc = [Series {
            name: "validation".into(),
            points: c.val_accuracy,
        }];
        line_chart(
            &dir.join("accuracy.png"),
            "Accuracy",
            "step",
            "accuracy",
            &acc,
            false,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
