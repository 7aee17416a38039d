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
            std::fs::write(&csv_path, csv)
                .with_context(|| format!("cannot write {}", csv_path.display()))?;
            println!("plot: {}\nvalues: {}", out.display(), csv_path.display());
            Ok(())
        }
    }
}
