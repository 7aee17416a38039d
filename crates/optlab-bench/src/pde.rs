//! `optlab-bench pde`: one Deep Ritz step of P22 (`optlab pde ritz`'s defaults: the quartic Lagrangian, the additive
//! solution, the Robin-consistent penalty, Adam) against PyTorch (`python/ritz_torch.py`, autograd with
//! create_graph for ∇u, float64) in the same run, for a few dimensions and widths; and the spectral solver's
//! preconditioned gradient-descent iteration.

use anyhow::Result;
use clap::Args;
use optlab::pde::ritz::{Ritz, RitzConfig};
use optlab::pde::spectral::{solve, SpectralConfig};
use optlab::pde::variational::{Lagrangian, Problem, Solution};

#[derive(Args, Debug)]
pub struct PdeBenchArgs {
    /// Timed steps per repetition (best of 3 repetitions is reported).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Interior points per step (a quarter as many on the boundary).
    #[arg(long, default_value_t = 1024)]
    pub points: usize,
    #[command(flatten)]
    pub torch: crate::harness::TorchSide,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

const CASES: [(usize, usize); 3] = [(2, 32), (8, 64), (16, 128)];

pub fn run(a: PdeBenchArgs) -> Result<()> {
    anyhow::ensure!(
        a.steps >= 1 && a.points >= 4,
        "--steps must be at least 1 and --points at least 4"
    );
    let lag = Lagrangian::Quartic { gamma: 1.0 };
    let mut ours = Vec::new();
    for (d, width) in CASES {
        let cfg = RitzConfig {
            width,
            points: a.points,
            boundary_points: a.points / 4,
            steps: usize::MAX,
            optimizer: "adam:lr=1e-3".into(),
            schedule: "constant".into(),
            test_points: 1,
            ..RitzConfig::default()
        };
        let mut t = Ritz::new(Problem::new(d, lag, Solution::Additive)?, cfg)?;
        ours.push(crate::harness::best_ms(a.steps, || {
            t.step()?;
            Ok(())
        })?);
    }
    let cases: Vec<serde_json::Value> = CASES
        .iter()
        .map(|&(d, width)| serde_json::json!({"d": d, "width": width, "points": a.points}))
        .collect();
    let torch = a.torch.run(
        "ritz_torch.py",
        &[
            serde_json::Value::from(cases).to_string(),
            a.steps.to_string(),
        ],
    );
    // The spectral solver: one iteration (synthesis of u and ∇u, the quadrature, the analysis) at d = 3.
    let start = std::time::Instant::now();
    let iters = 20;
    solve(
        Problem::new(3, lag, Solution::Product)?,
        SpectralConfig {
            modes: 8,
            points: 24,
            step: None,
            iterations: iters,
        },
        &mut |_| {},
    )?;
    let spectral = 1e3 * start.elapsed().as_secs_f64() / (iters + 1) as f64;
    let torch_ms = |i: usize| torch.as_ref().and_then(|v| v["cases"][i]["ms"].as_f64());
    if a.json {
        let cases: Vec<_> = CASES
            .iter()
            .enumerate()
            .map(|(i, &(d, width))| {
                serde_json::json!({
                    "d": d,
                    "width": width,
                    "optlab_ms_per_step": ours[i],
                    "torch_ms_per_step": torch_ms(i),
                    "ratio_optlab_over_torch": crate::harness::ratio(Some(ours[i]), torch_ms(i)),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "bench": "pde",
                "points": a.points,
                "boundary_points": a.points / 4,
                "steps": a.steps,
                "ritz": cases,
                "spectral": {"d": 3, "modes_per_axis": 8, "gauss_points_per_axis": 24, "optlab_ms_per_iteration": spectral},
            })
        );
        return Ok(());
    }
    println!(
        "optlab-bench pde (Deep Ritz step, f64: {} interior + {} boundary points, two-layer tanh, Adam; best of 3 x {} steps)",
        a.points,
        a.points / 4,
        a.steps
    );
    println!(
        "{:<22} {:>12} {:>12} {:>16}",
        "case", "optlab ms", "PyTorch ms", "optlab / torch"
    );
    for (i, &(d, width)) in CASES.iter().enumerate() {
        let t = torch_ms(i);
        println!(
            "{:<22} {:>12.3} {:>12} {:>16}",
            format!("d {d}, width {width}"),
            ours[i],
            t.map_or("n/a".into(), |t| format!("{t:.3}")),
            t.map_or("n/a (no torch)".into(), |t| format!(
                "{:.2}x time",
                ours[i] / t
            ))
        );
    }
    println!(
        "{:<22} {:>12.3} ms per iteration (d 3, 8^3 modes, 24^3 Gauss points)",
        "spectral PGD", spectral
    );
    Ok(())
}
