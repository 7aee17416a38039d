//! `optlab scaling fit|predict`: the scaling law with learning-rate annealing (P38).

use crate::plot::{line_chart, Series};
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use optlab::anneal_law::{self as law, FitFile, FitOptions, LossCurve, LossSource};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ScalingArgs {
    #[command(subcommand)]
    pub what: ScalingWhat,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LossKind {
    Train,
    Val,
}

/// `optlab scaling fit`.
#[derive(Args, Debug)]
pub struct FitArgs {
    /// Run directories (their metrics.jsonl, logged every step).
    #[arg(long = "run")]
    pub runs: Vec<PathBuf>,
    /// Curve CSV files (step,lr,loss).
    #[arg(long = "curve")]
    pub curves: Vec<PathBuf>,
    /// Which loss of a run to fit.
    #[arg(long, value_enum, default_value_t = LossKind::Train)]
    pub loss: LossKind,
    /// Average consecutive blocks of this many losses first (mini-batch losses are noisy).
    #[arg(long, default_value_t = 1)]
    pub bin: usize,
    /// Leave out the first fraction of each curve (the paper fits from 5% of the run on).
    #[arg(long, default_value_t = 0.05)]
    pub skip: f64,
    /// Decay of the annealing momentum.
    #[arg(long, default_value_t = law::DEFAULT_LAMBDA)]
    pub lambda: f64,
    /// The fitted law (JSON); a plot of the fit is written beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the fitted law as one JSON object on stdout (the summary goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ScalingWhat {
    /// Fit L = L0 + A*S1^-alpha - C*S2 to one or more runs or loss curves.
    #[command(
        after_help = "Examples:\n  optlab scaling fit --run runs/constant --run runs/cosine --bin 20 --out fit.json\n  optlab scaling fit --curve constant.csv --curve cosine.csv --out fit.json\n\nA curve CSV has the header step,lr,loss and one row per update (step 1, 2, ...): the lr of that update and the\nloss after it (the loss may be empty)."
    )]
    Fit(FitArgs),
    /// Predict the loss curve of schedules from a fitted law, and rank them by final loss.
    #[command(
        after_help = "Example:\n  optlab scaling predict --params fit.json --schedule wsd:decay_frac=0.2 --schedule linear --steps 2000 --out pred.csv"
    )]
    Predict {
        /// A law written by `optlab scaling fit`.
        #[arg(long)]
        params: PathBuf,
        /// Schedule specs (see `optlab schedule plot`); several are ranked.
        #[arg(long = "schedule", required = true)]
        schedules: Vec<String>,
        /// Steps of the run.
        #[arg(long)]
        steps: u64,
        /// Peak learning rate (default: the peak of the fitted runs).
        #[arg(long)]
        lr: Option<f64>,
        /// The predicted curves (CSV); a PNG is written beside it.
        #[arg(long)]
        out: PathBuf,
        /// Print the final losses and ranking as one JSON object on stdout (the summary goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Compare a fitted law with runs it was not fitted on: the law's curve for each run's logged lrs against the
    /// run's losses (MAPE, final loss, and whether the law ranks the runs right).
    #[command(
        after_help = "Example:\n  optlab scaling check --params fit.json --run runs/wsd --run runs/linear --bin 25"
    )]
    Check {
        /// A law written by `optlab scaling fit`.
        #[arg(long)]
        params: PathBuf,
        /// Run directories (metrics.jsonl logged every step).
        #[arg(long = "run", required = true)]
        runs: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = LossKind::Train)]
        loss: LossKind,
        #[arg(long, default_value_t = 1)]
        bin: usize,
        /// Leave out the first fraction of each run.
        #[arg(long, default_value_t = 0.05)]
        skip: f64,
        /// Print the comparison as one JSON object on stdout (the table goes to stderr).
        #[arg(long)]
        json: bool,
    },
}

/// Human-readable output: stdout, or stderr when stdout carries the `--json` object.
macro_rules! say {
    ($json:expr, $($t:tt)*) => {
        if $json {
            eprintln!($($t)*)
        } else {
            println!($($t)*)
        }
    };
}

pub fn run(a: ScalingArgs) -> Result<()> {
    match a.what {
        ScalingWhat::Fit(f) => fit(&f),
        ScalingWhat::Predict {
            params,
            schedules,
            steps,
            lr,
            out,
            json,
        } => predict(&params, &schedules, steps, lr, &out, json),
        ScalingWhat::Check {
            params,
            runs,
            loss,
            bin,
            skip,
            json,
        } => check(&params, &runs, loss, bin, skip, json),
    }
}

fn fit(f: &FitArgs) -> Result<()> {
    let json = f.json;
    anyhow::ensure!(
        !f.runs.is_empty() || !f.curves.is_empty(),
        "give at least one --run DIR or --curve FILE.csv"
    );
    anyhow::ensure!(f.bin >= 1, "--bin must be at least 1");
    let mut curves: Vec<LossCurve> = Vec::new();
    for r in &f.runs {
        curves.push(law::curve_from_run(r, source_of(f.loss), f.bin)?);
    }
    for c in &f.curves {
        curves.push(law::curve_from_csv(c, f.bin)?);
    }
    let opts = FitOptions {
        lambda: f.lambda,
        ..FitOptions::default()
    };
    let file = law::fit_curves(&curves, f.skip, &opts)?;
    let fitted = file.law;
    let mut series = Vec::new();
    for c in &curves {
        let name = short_name(&c.name);
        series.push(Series {
            name: format!("{name} (observed)"),
            points: c.losses.iter().map(|&(k, l)| (k as f64, l)).collect(),
        });
        series.push(Series {
            name: format!("{name} (law)"),
            points: fitted
                .curve(&c.lrs)
                .into_iter()
                .enumerate()
                .skip(law::skipped_updates(c, f.skip))
                .map(|(i, l)| ((i + 1) as f64, l))
                .collect(),
        });
    }
    file.save(&f.out)?;
    let png = f.out.with_extension("png");
    line_chart(
        &png,
        "Annealing scaling law fit (P38)",
        "step",
        "loss",
        &series,
        true,
    )?;
    let report = &file.report;
    say!(json,
        "L = {:.5} + {:.5} * S1^-{:.5} - {:.5} * S2   (lambda {}, {} points, R^2 {:.5}, MAPE {:.3}%, best of {} starts)",
        fitted.l0,
        fitted.a,
        fitted.alpha,
        fitted.c,
        fitted.lambda,
        report.points,
        report.r2,
        report.mape,
        report.starts
    );
    let spread: Vec<String> = law::PARAMETERS
        .iter()
        .zip(report.rel_stderr)
        .zip(report.identifiable)
        .map(|((name, se), ok)| match (ok, se) {
            (false, _) => format!("{name} not identifiable"),
            (true, Some(se)) => format!("{name} ±{:.2}%", 100.0 * se),
            (true, None) => format!("{name} ±?"),
        })
        .collect();
    say!(json, "  relative standard errors: {}", spread.join(", "));
    for c in &file.curves {
        say!(
            json,
            "  {}: {} points, MAPE {:.3}%",
            c.name,
            c.points,
            c.mape
        );
    }
    say!(json, "law: {}\nplot: {}", f.out.display(), png.display());
    if json {
        println!("{}", serde_json::to_string(&file)?);
    }
    Ok(())
}

fn short_name(name: &str) -> String {
    Path::new(name)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

fn source_of(loss: LossKind) -> LossSource {
    match loss {
        LossKind::Train => LossSource::Train,
        LossKind::Val => LossSource::Val,
    }
}

fn check(
    params: &Path,
    runs: &[PathBuf],
    loss: LossKind,
    bin: usize,
    skip: f64,
    json: bool,
) -> Result<()> {
    let file = FitFile::load(params)?;
    let mut rows = Vec::new();
    for r in runs {
        let c = law::curve_from_run(r, source_of(loss), bin.max(1))?;
        let mut row = law::check_curve(&file.law, &c, skip)?;
        row.name = r.display().to_string();
        rows.push(row);
    }
    say!(
        json,
        "| run | points | MAPE % | final loss observed | predicted |\n|---|---|---|---|---|"
    );
    for r in &rows {
        say!(
            json,
            "| {} | {} | {:.3} | {:.5} | {:.5} |",
            r.name,
            r.points,
            r.mape,
            r.final_observed,
            r.final_predicted
        );
    }
    let ranking_right = law::ranks_right(&rows);
    if rows.len() > 1 {
        say!(
            json,
            "ranking by final loss: {}",
            if ranking_right {
                "predicted right"
            } else {
                "predicted wrong"
            }
        );
    }
    if json {
        let v = serde_json::json!({ "runs": rows, "ranking_right": ranking_right });
        println!("{v}");
    }
    Ok(())
}

/// Writes `step,<schedule>,...` rows through a buffer into a temporary file renamed over `out`.
fn write_curves_csv(out: &Path, schedules: &[String], curves: &[(String, Vec<f64>)]) -> Result<()> {
    use std::io::Write as _;
    let tmp = optlab::tensor_io::temp_beside(out);
    let write = || -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        writeln!(w, "step,{}", schedules.join(","))?;
        let steps = curves.first().map_or(0, |c| c.1.len());
        for k in 0..steps {
            write!(w, "{}", k + 1)?;
            for c in curves {
                write!(w, ",{}", c.1[k])?;
            }
            writeln!(w)?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", out.display())
    })
}

fn predict(
    params: &Path,
    schedules: &[String],
    steps: u64,
    lr: Option<f64>,
    out: &Path,
    json: bool,
) -> Result<()> {
    let file = FitFile::load(params)?;
    let unknown = file.report.undetermined();
    anyhow::ensure!(
        unknown.is_empty(),
        "{}: the fit could not determine {}; its predictions would be arbitrary: refit with curves that vary \
         what they depend on (a decaying schedule for C, different run lengths for A and alpha)",
        params.display(),
        unknown.join(", ")
    );
    let peak = lr.unwrap_or(file.peak_lr);
    // Every curve is kept (f64 per step), plus one schedule's lrs and areas while it is computed.
    optlab::memory::check(
        &format!(
            "predicting {} schedules over {steps} steps",
            schedules.len()
        ),
        steps as f64 * 8.0 * (schedules.len() as f64 + 3.0),
        "predict fewer steps",
    )?;
    let mut curves = Vec::new();
    for spec in schedules {
        let lrs = law::schedule_lrs(spec, steps, peak)?;
        curves.push((spec.clone(), file.law.curve(&lrs)));
    }
    write_curves_csv(out, schedules, &curves)?;
    let skip = steps as usize / 20;
    // A chart shows a few thousand points at most.
    let stride = ((steps as usize - skip) / 4000).max(1);
    let series: Vec<Series> = curves
        .iter()
        .map(|(name, c)| Series {
            name: name.clone(),
            points: c
                .iter()
                .enumerate()
                .skip(skip)
                .step_by(stride)
                .map(|(i, l)| ((i + 1) as f64, *l))
                .collect(),
        })
        .collect();
    let png = out.with_extension("png");
    line_chart(&png, "Predicted loss (P38)", "step", "loss", &series, true)?;
    let mut ranked: Vec<(&String, f64)> = curves.iter().map(|(n, c)| (n, c[c.len() - 1])).collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    say!(
        json,
        "predicted final loss after {steps} steps at peak lr {peak}:"
    );
    for (i, (name, l)) in ranked.iter().enumerate() {
        say!(json, "  {}. {name}: {l:.5}", i + 1);
    }
    say!(json, "curves: {}\nplot: {}", out.display(), png.display());
    if json {
        let v = serde_json::json!({
            "steps": steps,
            "peak_lr": peak,
            "final_loss": ranked.iter().map(|(n, l)| serde_json::json!({"schedule": n, "loss": l})).collect::<Vec<_>>(),
        });
        println!("{v}");
    }
    Ok(())
}
