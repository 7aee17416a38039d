//! `optlab mup coord-check` and `optlab mup lr-sweep`: muP's two checks (P42), each with plots and JSON.

use crate::plot::{line_chart, Series};
use crate::run_args::RunOverrides;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use optlab::experiment::width::{best_lrs, coord_check, coord_slopes, lr_sweep, WidthSweep};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct MupArgs {
    #[command(subcommand)]
    pub cmd: MupCmd,
}

#[derive(Subcommand, Debug)]
pub enum MupCmd {
    /// Activation size of every layer against width after a few steps on one batch, under SP and muP: flat
    /// curves under muP (microsoft/mup's coordinate check). Writes coord_sp.png, coord_mup.png, coord_check.json.
    CoordCheck(CoordArgs),
    /// Final training loss against learning rate for each width, under SP and muP: the optimum moves with width
    /// under SP and stays under muP. Writes lr_sweep_sp.png, lr_sweep_mup.png, lr_sweep.json.
    LrSweep(SweepArgs),
}

/// The settings both checks share.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// supervised (default) or charlm; sets the defaults of --data and --model.
    #[arg(long)]
    pub task: Option<String>,
    /// Data spec [default: digits; text:context=64 for --task charlm].
    #[arg(long)]
    pub data: Option<String>,
    /// The architecture; its width (an MLP's hidden widths, a transformer's dim) is set per run
    /// [default: mlp:hidden=64-64,act=relu; transformer:layers=2,dim=64,heads=4 for --task charlm].
    #[arg(long)]
    pub model: Option<String>,
    /// Widths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256,512")]
    pub widths: Vec<usize>,
    /// muP's base width (where muP equals SP).
    #[arg(long, default_value_t = 64)]
    pub base: usize,
    /// Seeds, comma-separated.
    #[arg(
        long = "seed",
        alias = "seeds",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub seeds: Vec<u64>,
    /// Examples per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// auto (the optimizer's rule), adam (MuAdam) or sgd (MuSGD).
    #[arg(long, default_value = "auto")]
    pub mup_rule: String,
    /// Output directory.
    #[arg(long, default_value = "mup-report")]
    pub out: PathBuf,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab mup coord-check --widths 64,128,256,512,1024 --optimizer adam:lr=1e-2 --out coord\n  optlab mup coord-check --task charlm --widths 32,64,128,256 --base 32 --out coord-lm"
)]
pub struct CoordArgs {
    #[command(flatten)]
    pub common: Common,
    /// Optimizer spec (its lr is the base lr; muP rescales it per tensor).
    #[arg(long, default_value = "adam:lr=1e-2")]
    pub optimizer: String,
    /// Steps on the fixed batch (t = 1 is at initialisation).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab mup lr-sweep --widths 64,128,256,512 --out sweep\n  optlab mup lr-sweep --optimizer sgd:momentum=0.9 --lrs 0.01,0.03,0.1,0.3,1 --seed 0,1 --out sweep-sgd\n\nThe loss is the mean training loss over the last tenth of the steps; a diverged run counts as infinite."
)]
pub struct SweepArgs {
    #[command(flatten)]
    pub common: Common,
    /// Optimizer spec without lr (the lr is swept).
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// Learning rates, comma-separated [default: 2^-14, 2^-13, ..., 2^-3].
    #[arg(long, value_delimiter = ',')]
    pub lrs: Vec<f64>,
    /// Optimizer steps per run.
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
}

fn sweep(c: &Common, optimizer: &str, steps: Option<u64>) -> Result<WidthSweep> {
    let run = RunOverrides {
        task: c.task.clone(),
        data: c.data.clone(),
        batch_size: Some(c.batch_size),
        mup_rule: Some(c.mup_rule.clone()),
        schedule: Some("constant".into()),
        steps,
        ..RunOverrides::default()
    };
    let mut config = run.config()?;
    let lm = config.task == optlab::train::Task::Charlm;
    config.model = match &c.model {
        Some(m) => m.parse()?,
        None if lm => "transformer:layers=2,dim=64,heads=4,mlp=4,norm=ln".parse()?,
        None => "mlp:hidden=64-64,act=relu".parse()?,
    };
    config.optimizer = optimizer.parse()?;
    let sw = WidthSweep {
        config,
        widths: c.widths.clone(),
        base: c.base,
        seeds: c.seeds.clone(),
    };
    sw.check()?;
    Ok(sw)
}

fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes the whole result to `path`; with `print`, prints it without its per-run records on stdout and
/// returns true (the command is done).
fn emit_json(path: &Path, v: serde_json::Value, print: bool) -> Result<bool> {
    optlab::tensor_io::write_atomic(path, serde_json::to_string_pretty(&v)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    if print {
        let mut j = v;
        j.as_object_mut().expect("object").remove("records");
        println!("{j}");
    }
    Ok(print)
}

pub fn run(a: MupArgs) -> Result<()> {
    match a.cmd {
        MupCmd::CoordCheck(c) => coord(c),
        MupCmd::LrSweep(s) => lr(s),
    }
}

fn coord(a: CoordArgs) -> Result<()> {
    let c = &a.common;
    let sw = sweep(c, &a.optimizer, None)?;
    create(&c.out)?;
    if !c.json {
        eprintln!(
            "optlab mup coord-check: {} at widths {:?} (base {}), {} steps, {} seeds",
            sw.config.model,
            c.widths,
            c.base,
            a.steps,
            c.seeds.len()
        );
    }
    let records = coord_check(&sw, a.steps)?;
    let slopes = coord_slopes(&records, a.steps);
    for param in ["sp", "mup"] {
        let mut layers: Vec<String> = records
            .iter()
            .filter(|r| r.param == param)
            .map(|r| r.layer.clone())
            .collect();
        layers.dedup();
        layers.sort_by_key(|l| l.split(':').next().and_then(|i| i.parse::<usize>().ok()));
        layers.dedup();
        let series: Vec<Series> = layers
            .iter()
            .map(|layer| {
                let points = c
                    .widths
                    .iter()
                    .map(|&w| {
                        let v: Vec<f64> = records
                            .iter()
                            .filter(|r| {
                                r.param == param
                                    && r.layer == *layer
                                    && r.width == w
                                    && r.t == a.steps
                            })
                            .map(|r| r.l1)
                            .collect();
                        (
                            (w as f64).log2(),
                            v.iter().sum::<f64>() / v.len().max(1) as f64,
                        )
                    })
                    .collect();
                Series {
                    name: layer.clone(),
                    points,
                }
            })
            .collect();
        let name = if param == "sp" { "SP" } else { "muP" };
        line_chart(
            &c.out.join(format!("coord_{param}.png")),
            &format!(
                "Coordinate check, {name}: mean |output| at step {} ({})",
                a.steps, a.optimizer
            ),
            "log2 width",
            "mean |x|",
            &series,
            true,
        )?;
    }
    let max_slope = |param: &str| {
        slopes
            .iter()
            .filter(|s| s.0 == param)
            .map(|s| s.2.abs())
            .fold(0.0f64, f64::max)
    };
    let json = serde_json::json!({
        "model": sw.config.model,
        "optimizer": a.optimizer,
        "widths": c.widths,
        "base": c.base,
        "steps": a.steps,
        "slopes": slopes.iter().map(|(p, l, s)| serde_json::json!({"param": p, "layer": l, "slope": s})).collect::<Vec<_>>(),
        "max_abs_slope": {"sp": max_slope("sp"), "mup": max_slope("mup")},
        "records": records,
    });
    if emit_json(&c.out.join("coord_check.json"), json, c.json)? {
        return Ok(());
    }
    println!(
        "slope of log2 mean|x| against log2 width at step {} (0 = flat):",
        a.steps
    );
    println!("{:<16} {:>8} {:>8}", "layer", "SP", "muP");
    let mut layers: Vec<&String> = slopes.iter().map(|s| &s.1).collect();
    layers.sort_by_key(|l| l.split(':').next().and_then(|i| i.parse::<usize>().ok()));
    layers.dedup();
    for l in layers {
        let get = |p: &str| {
            slopes
                .iter()
                .find(|s| s.0 == p && &s.1 == l)
                .map_or("-".into(), |s| format!("{:+.3}", s.2))
        };
        println!("{:<16} {:>8} {:>8}", l, get("sp"), get("mup"));
    }
    println!(
        "largest |slope|: SP {:.3}, muP {:.3}",
        max_slope("sp"),
        max_slope("mup")
    );
    println!(
        "plots: {} {}",
        c.out.join("coord_sp.png").display(),
        c.out.join("coord_mup.png").display()
    );
    Ok(())
}

fn lr(a: SweepArgs) -> Result<()> {
    let c = &a.common;
    let sw = sweep(c, &a.optimizer, Some(a.steps))?;
    let lrs: Vec<f64> = if a.lrs.is_empty() {
        (-14..=-3).map(|k| 2f64.powi(k)).collect()
    } else {
        a.lrs.clone()
    };
    create(&c.out)?;
    let total = 2 * c.widths.len() * lrs.len() * c.seeds.len();
    if !c.json {
        eprintln!(
            "optlab mup lr-sweep: {} at widths {:?} (base {}), {} learning rates, {} steps, {total} runs",
            sw.config.model,
            c.widths,
            c.base,
            lrs.len(),
            a.steps
        );
    }
    let mut done = 0;
    let quiet = c.json;
    let records = lr_sweep(&sw, &lrs, |r| {
        done += 1;
        if !quiet {
            eprintln!(
                "[{done}/{total}] {} width {} lr {:.3e} seed {}: {}",
                r.param,
                r.width,
                r.lr,
                r.seed,
                if r.diverged {
                    "diverged".to_string()
                } else {
                    format!("{:.4}", r.train_loss)
                }
            );
        }
    })?;
    let best = best_lrs(&records);
    // Diverged or exploded runs are drawn at the top of the chart.
    let cap = records
        .iter()
        .filter(|r| !r.diverged)
        .map(|r| r.train_loss)
        .fold(f64::MIN, f64::max)
        .max(1e-9);
    for param in ["sp", "mup"] {
        let series: Vec<Series> = c
            .widths
            .iter()
            .map(|&w| Series {
                name: format!("width {w}"),
                points: lrs
                    .iter()
                    .map(|&lr| {
                        let v: Vec<f64> = records
                            .iter()
                            .filter(|r| r.param == param && r.width == w && r.lr == lr)
                            .map(|r| {
                                if r.diverged {
                                    cap
                                } else {
                                    r.train_loss.min(cap)
                                }
                            })
                            .collect();
                        (lr.log2(), v.iter().sum::<f64>() / v.len().max(1) as f64)
                    })
                    .collect(),
            })
            .collect();
        let name = if param == "sp" { "SP" } else { "muP" };
        line_chart(
            &c.out.join(format!("lr_sweep_{param}.png")),
            &format!(
                "{name}: training loss after {} steps ({})",
                a.steps, a.optimizer
            ),
            "log2 learning rate",
            "training loss",
            &series,
            true,
        )?;
    }
    let grid = |lr: f64| lrs.iter().position(|&l| l == lr).unwrap_or(0) as i64;
    let shift = |param: &str| {
        let idx: Vec<i64> = best
            .iter()
            .filter(|b| b.0 == param)
            .map(|b| grid(b.2))
            .collect();
        idx.iter().max().copied().unwrap_or(0) - idx.iter().min().copied().unwrap_or(0)
    };
    let json = serde_json::json!({
        "model": sw.config.model,
        "optimizer": a.optimizer,
        "widths": c.widths,
        "base": c.base,
        "steps": a.steps,
        "lrs": lrs,
        "best": best.iter().map(|(p, w, lr, loss)| serde_json::json!({"param": p, "width": w, "lr": lr, "log2_lr": lr.log2(), "train_loss": loss})).collect::<Vec<_>>(),
        "optimum_spread_grid_steps": {"sp": shift("sp"), "mup": shift("mup")},
        "records": records,
    });
    if emit_json(&c.out.join("lr_sweep.json"), json, c.json)? {
        return Ok(());
    }
    println!("best learning rate per width (lowest mean training loss over the last tenth of the steps):");
    println!(
        "{:<6} {:>6} {:>12} {:>8} {:>10}",
        "param", "width", "lr", "log2 lr", "loss"
    );
    for (p, w, lr, loss) in &best {
        println!(
            "{:<6} {:>6} {:>12.4e} {:>8.1} {:>10.4}",
            p,
            w,
            lr,
            lr.log2(),
            loss
        );
    }
    println!(
        "spread of the optimum across widths: SP {} grid steps, muP {} grid steps",
        shift("sp"),
        shift("mup")
    );
    println!(
        "plots: {} {}",
        c.out.join("lr_sweep_sp.png").display(),
        c.out.join("lr_sweep_mup.png").display()
    );
    Ok(())
}
