//! `optlab curvature`: λ_max, tr(H), the stability verdicts and the SLQ spectral density of a trained run or
//! of a test function at a point.

use crate::plot::{line_chart, Series};
use anyhow::{bail, Context, Result};
use clap::Args;
use optlab::curvature::{
    hutchinson_trace, lanczos, slq_density, stability_report, FunctionHessian, HessianOperator,
    ModelHessian, Probe,
};
use optlab::functions::TestFunction;
use optlab::train::{TrainConfig, Trainer};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab curvature --function rosenbrock --at=1,1 --lr 0.001 --json\n  optlab curvature --run runs/gd --batch 512 --slq-plot runs/gd/plots/slq.png\n\nJSON keys: lambda_max, trace, trace_stderr, lr, threshold (2/lr), gd_stable (lambda_max <= 2/lr),\nsgd_stable (trace <= 2/lr), max_stable_lr_gd, max_stable_lr_sgd, dim, slq {nodes, weights}."
)]
pub struct CurvatureArgs {
    /// A trained run directory (its config.toml and model.safetensors); the Hessian is that of the mean loss
    /// on the first --batch training examples.
    #[arg(long, value_name = "DIR", conflicts_with = "function")]
    pub run: Option<PathBuf>,
    /// A test function: rosenbrock | rastrigin | ackley | beale | quadratic | logistic.
    #[arg(long, requires = "at")]
    pub function: Option<String>,
    /// The point for --function, comma-separated (write --at=-1,2 for negative numbers).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub at: Vec<f64>,
    /// Learning rate for the verdicts [default: the run's base lr; 0.01 for functions].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Training examples in the Hessian's batch (--run).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Lanczos steps (per SLQ probe too).
    #[arg(long, default_value_t = 40)]
    pub lanczos_steps: usize,
    /// Probe vectors for Hutchinson's trace (and SLQ, which uses a tenth of them, at least 2).
    #[arg(long, default_value_t = 100)]
    pub probes: usize,
    /// Seed of the probe vectors.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the SLQ density (Gaussian-smoothed) as a PNG.
    #[arg(long, value_name = "PNG")]
    pub slq_plot: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CurvatureArgs) -> Result<()> {
    anyhow::ensure!(
        a.lanczos_steps >= 1,
        "--lanczos-steps 0: Lanczos needs at least one step (λ_max comes from its Ritz values)"
    );
    anyhow::ensure!(
        a.probes >= 1,
        "--probes 0: the trace estimate needs at least one probe"
    );
    // `products`: how the Hessian-vector products are computed.
    let (op, lr, what, products): (Box<dyn HessianOperator>, f64, String, &str) =
        match (&a.run, &a.function) {
            (Some(dir), _) => {
                let cfg = TrainConfig::from_toml_file(&dir.join("config.toml"))?;
                let base_lr = cfg.optimizer.hyperparam("lr")?;
                let t = Trainer::new(cfg)?;
                t.model().load(&dir.join("model.safetensors"))?;
                let data = t.train_data();
                let idx: Vec<usize> = (0..a.batch.min(data.len())).collect();
                anyhow::ensure!(!idx.is_empty(), "--batch must be at least 1");
                let (x, y) = data.batch(&idx, t.dtype(), &candle_core::Device::Cpu)?;
                let op = ModelHessian::new(t.model(), x, y, t.is_classification())?;
                let products = op.method();
                (
                    Box::new(op),
                    a.lr.unwrap_or(base_lr),
                    format!("{} ({} examples)", dir.display(), idx.len()),
                    products,
                )
            }
            (None, Some(name)) => {
                let f = TestFunction::parse(name)?;
                let op = FunctionHessian::new(f, &a.at)?;
                (
                    Box::new(op),
                    a.lr.unwrap_or(0.01),
                    format!("{name} at {:?}", a.at),
                    "analytic",
                )
            }
            (None, None) => bail!("give --run DIR or --function NAME --at=x,y"),
        };
    let n = op.dim();
    // More steps than the dimension add nothing: n steps already span the whole space (exact).
    let m = a.lanczos_steps.min(n);
    let top = lanczos(op.as_ref(), m, a.seed)?;
    let lambda_max = *top
        .ritz_values
        .last()
        .context("Lanczos returned no Ritz value")?;
    // Exact trace for small problems (n products), Hutchinson otherwise.
    let trace = if n <= a.probes {
        hutchinson_trace(op.as_ref(), n, Probe::Basis, a.seed)?
    } else {
        hutchinson_trace(op.as_ref(), a.probes, Probe::Rademacher, a.seed)?
    };
    let report = stability_report(lambda_max, trace.mean, lr)?;
    let slq = slq_density(
        op.as_ref(),
        m,
        (a.probes / 10).max(2),
        Probe::Rademacher,
        a.seed,
    )?;
    if let Some(p) = &a.slq_plot {
        let spread = slq.nodes.iter().copied().fold(f64::MIN, f64::max)
            - slq.nodes.iter().copied().fold(f64::MAX, f64::min);
        let curve = slq.smoothed(400, (spread / 100.0).max(1e-6));
        line_chart(
            p,
            "Hessian spectral density (SLQ)",
            "eigenvalue",
            "density",
            &[Series {
                name: what.clone(),
                points: curve,
            }],
            false,
        )?;
    }
    if a.json {
        let mut v = serde_json::to_value(report)?;
        v["trace_stderr"] = serde_json::json!(trace.stderr);
        v["dim"] = serde_json::json!(n);
        v["products"] = serde_json::json!(products);
        v["ritz_values"] = serde_json::json!(top.ritz_values);
        v["slq"] = serde_json::to_value(&slq)?;
        println!("{v}");
        return Ok(());
    }
    println!("curvature of {what}: {n} parameters, Hessian-vector products by {products}");
    println!(
        "lambda_max  {:.6e}   (Lanczos, {m} steps)",
        report.lambda_max
    );
    println!(
        "trace       {:.6e} ± {:.2e}   ({} probes)",
        report.trace, trace.stderr, trace.samples
    );
    println!(
        "lr          {:.6e}   2/lr = {:.6e}",
        report.lr, report.threshold
    );
    println!(
        "GD  criterion lambda_max <= 2/lr: {}   (largest stable lr {:.4e})",
        if report.gd_stable {
            "stable"
        } else {
            "UNSTABLE"
        },
        report.max_stable_lr_gd
    );
    println!(
        "SGD criterion tr(H) <= 2/lr:      {}   (largest lr it allows {:.4e})",
        if report.sgd_stable {
            "stable"
        } else {
            "UNSTABLE"
        },
        report.max_stable_lr_sgd
    );
    if let Some(p) = &a.slq_plot {
        println!("SLQ density: {}", p.display());
    }
    Ok(())
}
