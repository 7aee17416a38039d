//! `optlab schedule plot`: a schedule's factor per step as a PNG (and CSV).

use crate::plot::{line_chart, Series};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub what: ScheduleWhat,
}

#[derive(Subcommand, Debug)]
pub enum ScheduleWhat {
    /// Plot one or more schedules over a run of --steps steps.
    #[command(
        after_help = "Example:\n  optlab schedule plot wsd:warmup=100,decay_frac=0.2 cosine:warmup=100 --steps 1000 --out lr.png"
    )]
    Plot {
        /// Schedule specs: constant, cosine, linear, step, exponential, polynomial, wsd (see optlab train --help).
        #[arg(required = true)]
        specs: Vec<String>,
        /// Steps of the run.
        #[arg(long)]
        steps: u64,
        /// Multiply the factors by this base value (e.g. the peak lr).
        #[arg(long, default_value_t = 1.0)]
        base: f64,
        /// The PNG to write (a CSV of the same values is written beside it).
        #[arg(long)]
        out: PathBuf,
    },
    /// Refine a schedule from a previous run's logged gradient norms (P33); use the result with
    /// `optlab train --schedule file:refined.json`.
    #[command(
        after_help = "Example:\n  optlab schedule refine --run runs/a --out refined.json\n  optlab train --schedule file:refined.json --out runs/b"
    )]
    Refine {
        /// The run directory whose metrics.jsonl holds the gradient norms.
        #[arg(long)]
        run: PathBuf,
        /// Median-filter window as a fraction of the run's steps.
        #[arg(long, default_value_t = 0.1)]
        tau: f64,
        /// Where to save the schedule (JSON); a PNG comparing it with linear decay is written beside it.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(a: ScheduleArgs) -> Result<()> {
    match a.what {
        ScheduleWhat::Plot {
            specs,
            steps,
            base,
            out,
        } => {
            anyhow::ensure!(steps >= 1, "--steps must be at least 1");
            let mut series = Vec::new();
            let mut csv = format!("step,{}\n", specs.join(","));
            let scheds = specs
                .iter()
                .map(|s| optlab::schedule::from_spec(s, steps))
                .collect::<optlab::Result<Vec<_>>>()?;
            for t in 0..steps {
                let row: Vec<String> = scheds
                    .iter()
                    .map(|s| format!("{}", base * s.factor(t)))
                    .collect();
                csv.push_str(&format!("{t},{}\n", row.join(",")));
            }
            for s in &scheds {
                series.push(Series {
                    name: s.spec(),
                    points: (0..steps).map(|t| (t as f64, base * s.factor(t))).collect(),
                });
            }
            line_chart(&out, "Schedule", "step", "value", &series, false)?;
            let csv_path = out.with_extension("csv");
            optlab::tensor_io::write_atomic(&csv_path, csv.as_bytes())
                .with_context(|| format!("cannot write {}", csv_path.display()))?;
            println!("plot: {}\nvalues: {}", out.display(), csv_path.display());
            Ok(())
        }
        ScheduleWhat::Refine { run, tau, out } => {
            let norms: Vec<f64> = optlab::train::read_metrics(&run.join("metrics.jsonl"))?
                .into_iter()
                .filter_map(|r| match r {
                    optlab::train::Record::Train(m) => Some(m.grad_norm),
                    _ => None,
                })
                .collect();
            let eta = optlab::refine::refine(&norms, tau)?;
            optlab::schedule::TabulatedSchedule::save(&eta, &out)?;
            let n = eta.len();
            let linear: Vec<(f64, f64)> = (0..n)
                .map(|t| (t as f64, 1.0 - t as f64 / (n - 1) as f64))
                .collect();
            let refined: Vec<(f64, f64)> = eta
                .iter()
                .enumerate()
                .map(|(t, e)| (t as f64, *e))
                .collect();
            let png = out.with_extension("png");
            line_chart(
                &png,
                "Refined schedule (P33)",
                "step",
                "lr factor",
                &[
                    Series {
                        name: "refined".into(),
                        points: refined,
                    },
                    Series {
                        name: "linear decay".into(),
                        points: linear,
                    },
                ],
                false,
            )?;
            let peak = eta
                .iter()
                .copied()
                .enumerate()
                .fold((0, 0.0), |b, (i, e)| if e > b.1 { (i, e) } else { b })
                .0;
            println!("refined schedule from {n} logged gradient norms: peak at step {peak}, ends at {:.3}", eta[n - 1]);
            println!("schedule: {}\nplot: {}", out.display(), png.display());
            Ok(())
        }
    }
}
