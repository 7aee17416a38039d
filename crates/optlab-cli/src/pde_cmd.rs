//! `optlab pde train`: physics-constrained learning of Fisher–KPP with a soft (penalty) or hard (Levenberg–Marquardt
//! layer, optionally a mixture of experts) constraint (P08), against a finite-difference reference.

use crate::plot::{image_row, line_chart, Series};
use anyhow::Result;
use clap::{Args, Subcommand};
use optlab::pde::hard::{train, BasisKind, Constraint, Pde, TrainConfig};
use optlab::tensor_io::write_atomic;
use optlab::train::run_dir::RunDirLock;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PdeArgs {
    #[command(subcommand)]
    pub what: PdeWhat,
}

#[derive(Subcommand, Debug)]
pub enum PdeWhat {
    /// Train a basis network on the physics loss of Fisher–KPP u_t = ν u_xx + ρ u(1 − u) (periodic on [0, 1],
    /// u(x, 0) = 0.5 + 0.4 sin 2πx) or diffusion–sorption (u(0, t) = 1, u = D u_x at x = 1, u(x, 0) = 0.1) with soft
    /// or hard constraints; report the relative L2 error against a finite-difference reference, the PDE residual on
    /// held-out points and the time per step.
    #[command(
        after_help = "Examples:\n  optlab pde train --constraint soft --out runs/soft\n  optlab pde train --constraint hard --out runs/hard\n  optlab pde train --pde diffusion-sorption --constraint hard --out runs/sorption\n  optlab pde train --constraint hard --experts 4 --steps 100 --seed 1 --out runs/moe4 --json\n  optlab pde train --constraint hard --experts 4 --points 4096 --grid 64 --steps 20 --out runs/moe4-big\n  optlab pde train --basis mlp --constraint hard --out runs/hard-mlp\n\nWrites DIR/metrics.json, DIR/curve.csv and curve.png (the physics loss per step) and DIR/field.png\n(prediction, reference and |error| on the grid of x by t: the FNO's, or 32 x 32 for the MLP)."
    )]
    Train(TrainArgs),
    /// Deep Ritz with two-layer networks on a nonlinear elliptic variational PDE over [0, 1]^d (P22): the
    /// relative L2 and H1 errors against a manufactured solution for each dimension and width, and the width
    /// that reaches --target in each dimension.
    #[command(
        after_help = "Examples:\n  optlab pde ritz --dims 2 --widths 64 --out runs/ritz\n  optlab pde ritz --dims 2,4,8,16 --widths 4,8,16,32,64,128 --target 0.05 --out runs/ritz-sweep\n  optlab pde ritz --lagrangian plaplace:4 --solution product --boundary ansatz --dims 3 --out runs/ritz-p\n  optlab pde ritz --resume runs/ritz-sweep\n\nThe energy E(u) = ∫ L(u, ∇u) − f u over the unit cube, f (and the boundary data g) made so that the\nmanufactured solution is exact, estimated by Monte Carlo on fresh points each step. Writes DIR/runs.jsonl\n(one line per finished run; --resume skips those), curve-dD-wW.csv, summary.json, error_vs_width.png and\nwidth_needed.png."
    )]
    Ritz(crate::variational_cmd::RitzArgs),
    /// Preconditioned gradient descent u ← u − η (I − Δ)⁻¹ DE(u) on a sine basis (d ≤ 3, P22): the energy's
    /// geometric decay and the errors against the manufactured solution Π sin(πx_i).
    #[command(
        after_help = "Examples:\n  optlab pde spectral --d 2 --out runs/pgd\n  optlab pde spectral --lagrangian plaplace:4 --d 3 --modes 6 --step 0.5 --iterations 100 --json\n\nWrites DIR/summary.json (per iteration: energy, errors, the preconditioned gradient's norm; the fitted rate)\nand energy.png."
    )]
    Spectral(crate::variational_cmd::SpectralArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// fisher-kpp (ν, ρ below; periodic, t in [0, 1]) or diffusion-sorption (PDEBench's constants, t in [0, 500]).
    #[arg(long, default_value = "fisher-kpp")]
    pde: String,
    /// soft (weights learned under the loss) or hard (weights solved by LM on sampled points).
    #[arg(long)]
    constraint: String,
    /// Experts of the hard constraint (each solves on its interval of x).
    #[arg(long, default_value_t = 1)]
    experts: usize,
    #[arg(long, default_value_t = 200)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Constraint points per step for the hard layer (interior; a quarter as many on the initial line for the MLP,
    /// every initial and boundary node for the FNO).
    #[arg(long, default_value_t = 256)]
    points: usize,
    /// The basis network: fno (the paper's, on a --grid x --grid grid of (t, x)) or mlp (tanh, 2 x 32).
    #[arg(long, default_value = "fno")]
    basis: String,
    /// The FNO's grid side (nodes in t and in x) [default: 32].
    #[arg(long)]
    grid: Option<usize>,
    /// Fourier modes the FNO keeps in t (per sign) and in x [default: 8].
    #[arg(long)]
    modes: Option<usize>,
    /// Diffusion ν and growth ρ.
    #[arg(long, default_value_t = 0.01)]
    nu: f64,
    #[arg(long, default_value_t = 1.0)]
    rho: f64,
    #[arg(long)]
    out: PathBuf,
    /// The metrics as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: PdeArgs) -> Result<()> {
    match a.what {
        PdeWhat::Train(t) => train_cmd(t),
        PdeWhat::Ritz(r) => crate::variational_cmd::ritz(r),
        PdeWhat::Spectral(s) => crate::variational_cmd::spectral(s),
    }
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let TrainArgs {
        pde,
        constraint,
        experts,
        steps,
        seed,
        points,
        basis,
        grid,
        modes,
        nu,
        rho,
        out,
        json,
    } = a;
    anyhow::ensure!(
        (4..=1_000_000).contains(&points),
        "--points must be between 4 and 1000000"
    );
    anyhow::ensure!(
        nu > 0.0 && nu.is_finite() && rho.is_finite(),
        "--nu must be positive and --rho finite"
    );
    let equation = match pde.as_str() {
        "fisher-kpp" => Pde::Fisher { nu, rho },
        "diffusion-sorption" => Pde::Sorption,
        other => anyhow::bail!("unknown --pde '{other}': use fisher-kpp or diffusion-sorption"),
    };
    let constraint = match constraint.as_str() {
        "soft" if experts == 1 => Constraint::Soft,
        "soft" => anyhow::bail!("--experts applies to the hard constraint only"),
        "hard" => Constraint::Hard { experts },
        other => anyhow::bail!("unknown --constraint '{other}': use soft or hard"),
    };
    let basis_kind = match basis.as_str() {
        "fno" => {
            let (grid, modes) = (grid.unwrap_or(32), modes.unwrap_or(8));
            anyhow::ensure!(
                (3..=512).contains(&grid),
                "--grid must be between 3 and 512"
            );
            BasisKind::Fno { modes, grid }
        }
        "mlp" if grid.is_some() || modes.is_some() => {
            anyhow::bail!("--grid and --modes apply to the FNO basis only (--basis fno)")
        }
        "mlp" => BasisKind::Mlp,
        other => anyhow::bail!("unknown --basis '{other}': use fno or mlp"),
    };
    let cfg = TrainConfig {
        constraint,
        pde: equation,
        basis: basis_kind,
        steps,
        seed,
        interior: points,
        initial: points / 4,
        ..TrainConfig::default()
    };
    let _lock = RunDirLock::acquire(&out)?;
    let o = train(&cfg)?;
    let mut csv = String::from("step,loss\n");
    for (i, l) in o.curve.iter().enumerate() {
        csv.push_str(&format!("{i},{l}\n"));
    }
    write_atomic(&out.join("curve.csv"), csv.as_bytes())?;
    line_chart(
        &out.join("curve.png"),
        &format!("{pde}, {constraint:?}: physics loss"),
        "step",
        "loss",
        &[Series {
            name: String::new(),
            points: o
                .curve
                .iter()
                .enumerate()
                .map(|(i, l)| (i as f64, *l))
                .collect(),
        }],
        true,
    )?;
    let err: Vec<f64> = o
        .prediction
        .iter()
        .zip(&o.reference)
        .map(|(p, r)| (p - r).abs())
        .collect();
    let max_err = err
        .iter()
        .fold(0.0f64, |a, v| a.max(*v))
        .max(f64::MIN_POSITIVE);
    // Rows of the images are time, top = t = 0.
    image_row(
        &out.join("field.png"),
        &[
            o.prediction.clone(),
            o.reference.clone(),
            err.iter().map(|e| e / max_err).collect(),
        ],
        o.grid,
        (192 / o.grid).max(1) as u32,
        &[
            "prediction".into(),
            "reference".into(),
            format!("|err| ≤ {max_err:.1e}"),
        ],
    )?;
    let metrics = json!({
        "pde": pde, "constraint": format!("{constraint:?}"), "experts": experts, "nu": nu, "rho": rho,
        "steps": steps, "seed": seed, "points": points, "basis": basis,
        "grid": match basis_kind { BasisKind::Fno { grid, .. } => Some(grid), BasisKind::Mlp => None },
        "modes": match basis_kind { BasisKind::Fno { modes, .. } => Some(modes), BasisKind::Mlp => None }, "rel_l2": o.rel_l2, "residual_rms": o.residual_rms,
        "seconds_per_step": o.seconds_per_step, "final_loss": o.curve.last(),
    });
    write_atomic(
        &out.join("metrics.json"),
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )?;
    if json {
        println!("{metrics}");
    } else {
        println!(
            "{pde}, {constraint:?}, {steps} steps: relative L2 error {:.4}, PDE residual RMS {:.4}, {:.4} s per step",
            o.rel_l2, o.residual_rms, o.seconds_per_step
        );
    }
    Ok(())
}
