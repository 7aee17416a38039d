//! `optlab convex-relu train`: globally optimal two-layer ReLU training through the convex program (P28).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use optlab::data::{load_csv, Target};
use optlab::solvers::convex_relu::{
    solve_admm, with_bias_column, AdmmConfig, ConvexReluProblem, TwoLayerRelu,
};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ConvexReluArgs {
    #[command(subcommand)]
    pub what: ConvexReluWhat,
}

#[derive(Subcommand, Debug)]
pub enum ConvexReluWhat {
    /// Solve the convex program by ADMM over sampled activation patterns and save the equivalent ReLU network.
    #[command(
        after_help = "Example:\n  optlab convex-relu train data.csv --label y --patterns 50 --beta 1e-3 --out runs/cvx\n\nThe CSV has a header row, numeric feature columns and one real-valued target (--label, default: the last\ncolumn). A bias feature is added. The network is written as model.safetensors with the state-dict names of\n`mlp:hidden=H,act=relu` (H = active neurons, printed), and the solution as solution.json."
    )]
    Train {
        data: PathBuf,
        /// Target column (default: the last).
        #[arg(long)]
        label: Option<String>,
        /// Gaussian directions sampled for activation patterns (duplicates are dropped).
        #[arg(long, default_value_t = 50)]
        patterns: usize,
        /// Weight decay beta of the network (group-lasso weight of the convex program).
        #[arg(long, default_value_t = 1e-3)]
        beta: f64,
        /// ADMM penalty (default: beta).
        #[arg(long)]
        rho: Option<f64>,
        #[arg(long, default_value_t = 20_000)]
        iters: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: ConvexReluArgs) -> Result<()> {
    let ConvexReluWhat::Train {
        data,
        label,
        patterns,
        beta,
        rho,
        iters,
        seed,
        out,
        json,
    } = a.what;
    let ds = load_csv(&data, label.as_deref(), true)?;
    let y: Vec<f64> = match &ds.target {
        Target::Values { y, dim: 1 } => y.iter().map(|v| *v as f64).collect(),
        _ => bail!(
            "{}: convex-relu needs one real-valued target column",
            data.display()
        ),
    };
    if patterns == 0 {
        bail!("--patterns must be at least 1");
    }
    let (n, d) = (ds.len(), ds.feature_dim());
    let feats: Vec<f64> = ds.x.iter().map(|v| *v as f64).collect();
    let x = with_bias_column(&feats, n, d);
    let masks = ConvexReluProblem::sample_patterns(&x, d + 1, patterns, seed)?;
    let prob = ConvexReluProblem::new(x, y, d + 1, masks)?;
    let cfg = AdmmConfig {
        rho,
        max_iters: iters,
        ..AdmmConfig::default()
    };
    let start = std::time::Instant::now();
    let sol = solve_admm(&prob, beta, &cfg)?;
    let seconds = start.elapsed().as_secs_f64();
    let net = TwoLayerRelu::from_solution(&sol);
    let loss = net.loss(&prob.x, &prob.y, prob.p, beta);
    let pred = net.predict(&prob.x, prob.p);
    let mse = pred
        .iter()
        .zip(&prob.y)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / n as f64;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let model_path = out.join("model.safetensors");
    optlab::tensor_io::write_safetensors(&model_path, &net.state_dict()?, None)?;
    let spec = format!("mlp:hidden={},act=relu", net.alpha.len());
    let report = serde_json::json!({
        "data": data.display().to_string(), "examples": n, "features": d,
        "patterns": prob.masks.len(), "beta": beta, "rho": rho.unwrap_or(beta),
        "objective": sol.objective, "network_loss": loss, "train_mse": mse,
        "iterations": sol.iterations, "converged": sol.converged,
        "primal_residual": sol.primal_residual, "dual_residual": sol.dual_residual,
        "max_violation": sol.max_violation, "neurons": net.alpha.len(), "model_spec": spec,
        "model": model_path.display().to_string(), "seconds": seconds,
    });
    optlab::tensor_io::write_atomic(
        &out.join("solution.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )
    .with_context(|| format!("cannot write into {}", out.display()))?;
    if json {
        println!("{report}");
    } else {
        println!(
            "convex objective {:.6e} after {} ADMM iterations ({:.2} s{}), {} patterns",
            sol.objective,
            sol.iterations,
            seconds,
            if sol.converged {
                ""
            } else {
                ", iteration limit"
            },
            prob.masks.len()
        );
        println!(
            "recovered network: {} neurons ({spec}), regularised loss {loss:.6e}, train MSE {mse:.4e}, max cone violation {:.1e}",
            net.alpha.len(),
            sol.max_violation
        );
        println!("model: {}", model_path.display());
    }
    Ok(())
}
