//! `optlab optimize`: optimizers on analytic test functions, trajectories as JSON and paths on a contour plot.

use crate::plot::{colour, register_font};
use anyhow::{bail, Context, Result};
use candle_core::DType;
use clap::Args;
use optlab::functions::{optimize, TestFunction, Trajectory};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab optimize --function rosenbrock --init=-1.5,2 --optimizer adam:lr=0.05 --steps 500 --out traj.json\n  optlab optimize --function beale --init=1,-1 --optimizer sgd:lr=1e-3,momentum=0.9 --optimizer lion:lr=0.01 \\\n      --optimizer adamp:lr=0.05 --steps 1000 --out beale.json --plot beale.png\n\nThe JSON is {\"function\", \"trajectory\": [[x0...], ...], \"values\": [...], \"runs\": [{\"optimizer\", \"trajectory\", \"values\"}, ...]};\ntrajectory/values are those of the first optimizer."
)]
pub struct OptimizeArgs {
    /// rosenbrock | rastrigin | ackley | beale | quadratic | logistic.
    #[arg(long)]
    pub function: String,
    /// The starting point, comma-separated (write --init=-1.5,2 when it starts with a minus sign).
    #[arg(
        long,
        value_delimiter = ',',
        allow_negative_numbers = true,
        required = true
    )]
    pub init: Vec<f64>,
    /// An optimizer spec; repeat to compare several on one plot.
    #[arg(long = "optimizer", required = true)]
    pub optimizers: Vec<String>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 500)]
    pub steps: usize,
    /// f32 or f64.
    #[arg(long, default_value = "f64")]
    pub dtype: String,
    /// Where to write the trajectories (JSON).
    #[arg(long)]
    pub out: PathBuf,
    /// Also draw the paths on the function's contour (2-D functions only).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

pub fn run(a: OptimizeArgs) -> Result<()> {
    let f = TestFunction::parse(&a.function)?;
    let dtype = match a.dtype.as_str() {
        "f32" => DType::F32,
        "f64" => DType::F64,
        other => bail!("--dtype {other} must be f32 or f64"),
    };
    if let Some(bad) = a.init.iter().find(|v| !v.is_finite()) {
        bail!("--init contains {bad}; give finite numbers");
    }
    anyhow::ensure!(a.steps >= 1, "--steps 0: give at least one optimizer step");
    let runs: Vec<Trajectory> = a
        .optimizers
        .iter()
        .map(|s| optimize(f, &a.init, s, a.steps, dtype))
        .collect::<optlab::Result<_>>()?;
    let json = serde_json::json!({
        "function": f.name(),
        "init": a.init,
        "steps": a.steps,
        "dtype": a.dtype,
        "trajectory": runs[0].trajectory,
        "values": runs[0].values,
        "runs": runs,
    });
    optlab::tensor_io::write_atomic(&a.out, serde_json::to_string(&json)?.as_bytes())
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    for r in &runs {
        let last = r.trajectory.last().expect("init row");
        println!(
            "{:<50} f = {:<12.6e} at {:?}",
            r.optimizer,
            r.values.last().expect("value"),
            last
        );
    }
    println!("trajectories: {}", a.out.display());
    if let Some(p) = &a.plot {
        if a.init.len() != 2 {
            bail!(
                "--plot draws 2-D functions; this run has {} dimensions",
                a.init.len()
            );
        }
        contour_plot(p, f, &runs, &a.optimizers)?;
        println!("plot: {}", p.display());
    }
    Ok(())
}

/// log-scaled filled contour of f with each optimizer's path.
fn contour_plot(
    path: &Path,
    f: TestFunction,
    runs: &[Trajectory],
    labels: &[String],
) -> Result<()> {
    register_font();
    let ((mut x0, mut x1), (mut y0, mut y1)) = f.plot_window();
    for r in runs {
        for p in &r.trajectory {
            x0 = x0.min(p[0]);
            x1 = x1.max(p[0]);
            y0 = y0.min(p[1]);
            y1 = y1.max(p[1]);
        }
    }
    let root = BitMapBackend::new(path, (900, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} — optimizer paths", f.name()),
            ("sans-serif", 24),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .label_style(("sans-serif", 15))
        .draw()?;
    let n = 160;
    let (dx, dy) = ((x1 - x0) / n as f64, (y1 - y0) / n as f64);
    let mut grid = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let (x, y) = (x0 + (i as f64 + 0.5) * dx, y0 + (j as f64 + 0.5) * dy);
            grid.push((x, y, f.eval(&[x, y])?.max(0.0).ln_1p()));
        }
    }
    let (lo, hi) = grid
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), g| (a.min(g.2), b.max(g.2)));
    chart.draw_series(grid.iter().map(|&(x, y, v)| {
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
        // Banded shading gives visible level sets.
        let band = ((t * 14.0).floor() / 14.0 * 0.85 + 0.1).min(1.0);
        let c = (255.0 * (1.0 - 0.75 * band)) as u8;
        Rectangle::new(
            [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)],
            RGBColor(c, c, 255 - (band * 60.0) as u8).filled(),
        )
    }))?;
    if let Some(m) = f.minimiser(2) {
        chart.draw_series(std::iter::once(Cross::new(
            (m[0], m[1]),
            8,
            BLACK.stroke_width(3),
        )))?;
    }
    for (k, r) in runs.iter().enumerate() {
        let color = colour(k, runs.len());
        let pts: Vec<(f64, f64)> = r.trajectory.iter().map(|p| (p[0], p[1])).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(labels[k].clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if let Some(&end) = pts.last() {
            chart.draw_series(std::iter::once(Circle::new(end, 5, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
