//! `optlab compare` and `optlab demo`: several optimizers and/or models on one task, one report. The runs,
//! aggregation and report are the library's (`optlab::experiment`); this module parses flags, shows progress,
//! draws the charts and writes the files.

use crate::plot::{draw, plot_run};
use crate::progress::Progress;
use crate::run_args::RunOverrides;
use anyhow::{Context, Result};
use clap::Args;
use optlab::experiment::{demo, Comparison, ComparisonResult, Plan, Report};
use optlab::train::Observer;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  optlab demo --out demo-report   # then open demo-report/report.md"
)]
pub struct DemoArgs {
    /// Report directory.
    #[arg(long, default_value = "demo-report")]
    pub out: PathBuf,
    /// Passes over the digits training split per optimizer.
    #[arg(long, default_value_t = 20)]
    pub epochs: u64,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab compare --optimizer sgd:lr=0.1,momentum=0.9 --optimizer adamw:lr=1e-3 --schedule cosine:warmup=20 --epochs 10 --out cmp\n  optlab compare --task charlm --model transformer:norm=ln --model transformer:norm=pn --model transformer:norm=bn --seed 0,1,2 --out p12\n\nEvery model runs with every optimizer and every seed. With several seeds the report gives mean ± std and the\ncurves are averaged over seeds. A run whose loss becomes NaN is reported as diverged; the others go on."
)]
pub struct CompareArgs {
    /// An optimizer spec; repeat the flag for each optimizer to compare [default: the task's].
    #[arg(long = "optimizer")]
    pub optimizers: Vec<String>,
    /// A model spec; repeat the flag for each model to compare [default: the task's].
    #[arg(long = "model")]
    pub models: Vec<String>,
    #[command(flatten)]
    pub run: RunOverrides,
    /// Seeds, comma-separated (same data, split, init and batches across configurations for one seed).
    #[arg(
        long = "seed",
        alias = "seeds",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub seeds: Vec<u64>,
    /// Report directory.
    #[arg(long, default_value = "compare-report")]
    pub out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub fn demo(a: DemoArgs) -> Result<()> {
    let plan = demo::plan(&a.out, a.epochs)?;
    announce(&plan, &a.out, a.quiet);
    let (result, _, report) = demo::run(plan, &mut progress(a.quiet))?;
    finish(&result, &report, &a.out)
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let cmp = Comparison {
        base: a.run.config()?,
        models: labelled(&a.models)?,
        optimizers: labelled(&a.optimizers)?,
        seeds: a.seeds.clone(),
    };
    let plan = cmp.plan(&a.out)?;
    announce(&plan, &a.out, a.quiet);
    let result = plan.run(&mut progress(a.quiet))?;
    let report = result.report()?;
    finish(&result, &report, &a.out)
}

/// Each spec parsed, labelled with the text as given.
fn labelled<T: std::str::FromStr<Err = optlab::Error>>(
    specs: &[String],
) -> Result<Vec<(String, T)>> {
    specs.iter().map(|s| Ok((s.clone(), s.parse()?))).collect()
}

fn progress(quiet: bool) -> impl FnMut(&str) -> Box<dyn Observer> {
    move |label: &str| {
        let name = label.split(':').next().unwrap_or(label);
        Box::new(Progress::new(name, quiet)) as Box<dyn Observer>
    }
}

fn announce(plan: &Plan, out: &Path, quiet: bool) {
    if quiet {
        return;
    }
    let t = plan.first();
    eprintln!(
        "optlab compare: {} configurations x {} seeds, {} on {}, {} steps each -> {}",
        plan.configurations(),
        plan.seeds(),
        t.model().describe(),
        t.config().data,
        t.total_steps(),
        out.display()
    );
}

/// Draws every run's plots and the report's charts, writes report.md and prints the table.
fn finish(result: &ComparisonResult, report: &Report, out: &Path) -> Result<()> {
    for o in &result.outcomes {
        for r in o.runs.iter().filter(|r| r.result.is_ok()) {
            plot_run(&r.dir)?;
        }
    }
    for c in &report.charts {
        draw(out, c)?;
    }
    let path = out.join("report.md");
    optlab::tensor_io::write_atomic(&path, report.markdown.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    print!("{}", result.text_table());
    println!("report: {}", path.display());
    let charts: Vec<String> = report
        .charts
        .iter()
        .map(|c| out.join(&c.file).display().to_string())
        .collect();
    println!("plots:  {}", charts.join(" "));
    Ok(())
}
