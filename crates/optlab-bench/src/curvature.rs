//! `optlab-bench curvature`: the cost of one exact Hessian-vector product as a multiple of one gradient on MLP
//! 784-1024-1024-10 (batch 256), with PyTorch's double backward measured in the same run when installed.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use optlab::curvature::{HessianOperator, ModelHessian};
use optlab::nn::{ModelSpec, Sequential};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct CurvatureBenchArgs {
    /// Timed repetitions (best is reported).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    #[command(flatten)]
    pub torch: crate::harness::TorchSide,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
}

fn best_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best * 1e3)
}

/// M-FAC step time (replace one window gradient + one inverse-Hessian-vector product) against d and m, as
/// `(d, m, ms)`: the cost should grow linearly in d (O(dm + m³)).
fn mfac_scaling(reps: usize) -> Result<Vec<(usize, usize, f64)>> {
    use optlab::optim::mfac::MfacInverse;
    let mut rows = Vec::new();
    for &m in &[16usize, 64] {
        for &d in &[10_000usize, 100_000, 1_000_000] {
            let g: Vec<f64> = (0..d)
                .map(|i| ((i * 7919) % 1000) as f64 / 1000.0 - 0.5)
                .collect();
            let mut inv = MfacInverse::new(d, m, 1e-4)?;
            for _ in 0..m {
                inv.push(&g)?;
            }
            let ms = best_ms(reps, || {
                inv.push(&g)?;
                inv.ihvp(&g)?;
                Ok(())
            })?;
            rows.push((d, m, ms));
        }
    }
    Ok(rows)
}

pub fn run(a: CurvatureBenchArgs) -> Result<()> {
    anyhow::ensure!(a.reps >= 1, "--reps must be at least 1");
    optlab::require_second_order()?;
    let model = Sequential::new(
        &ModelSpec::parse("mlp:hidden=1024-1024")?,
        &[784],
        10,
        0,
        DType::F32,
    )?;
    let x = Tensor::randn(0f32, 1.0, (256, 784), &Device::Cpu)?;
    let y = Tensor::from_vec(
        (0..256u32).map(|i| i % 10).collect::<Vec<_>>(),
        256,
        &Device::Cpu,
    )?;
    let h = ModelHessian::new(&model, x, y, true)?;
    // As PyTorch's side: a first-order gradient, and H·v with v in the parameters' own tensors (its
    // `grad_outputs`); `api_ms` adds the flat f64 vectors of [`HessianOperator::hvp`].
    let params = model.params();
    let ts: Vec<&Tensor> = params.iter().map(|p| p.tensor()).collect();
    let vs = ts
        .iter()
        .map(|t| t.ones_like())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let v: Vec<f64> = vec![1.0; h.dim()];
    let grad_ms = best_ms(a.reps, || {
        optlab::gradients(&h.loss()?, false)?;
        Ok(())
    })?;
    // The R-operator (an MLP's products), and double backward, the general path PyTorch's side also takes.
    let hvp_ms = best_ms(a.reps, || {
        h.hvp_tensors(&vs)?;
        Ok(())
    })?;
    let double_ms = best_ms(a.reps, || {
        optlab::hvp(&h.loss()?, &ts, &vs)?;
        Ok(())
    })?;
    let api_ms = best_ms(a.reps, || {
        h.hvp(&v)?;
        Ok(())
    })?;
    let mfac = mfac_scaling(a.reps)?;
    let torch = a.torch.run("torch_curvature.py", &[a.reps.to_string()]);
    let torch_ms = |key: &str| torch.as_ref().and_then(|t| t[key].as_f64());
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "curvature",
                "parameters": h.dim(),
                "optlab": {"grad_ms": grad_ms, "hvp_ms": hvp_ms, "hvp_method": h.method(), "hvp_over_grad": hvp_ms / grad_ms, "hvp_double_backward_ms": double_ms, "hvp_f64_api_ms": api_ms},
                "torch": torch.as_ref().map(|_| serde_json::json!({
                    "grad_ms": torch_ms("grad_ms"),
                    "hvp_ms": torch_ms("hvp_ms"),
                })),
                "ratio_hvp_optlab_over_torch": torch_ms("hvp_ms").map(|t| hvp_ms / t),
                "mfac": mfac.iter().map(|&(d, m, ms)| serde_json::json!({"d": d, "m": m, "ms": ms})).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    println!(
        "optlab-bench curvature: MLP 784-1024-1024-10, batch 256, f32 ({} parameters), best of {}",
        h.dim(),
        a.reps
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12}",
        "", "gradient ms", "HVP ms", "HVP / grad"
    );
    println!(
        "{:<10} {:>12.3} {:>12.3} {:>11.2}x",
        "optlab",
        grad_ms,
        hvp_ms,
        hvp_ms / grad_ms
    );
    match (torch_ms("grad_ms"), torch_ms("hvp_ms")) {
        (Some(g), Some(hv)) => {
            println!("{:<10} {:>12.3} {:>12.3} {:>11.2}x", "torch", g, hv, hv / g);
            println!("optlab HVP / torch HVP: {:.2}x", hvp_ms / hv);
        }
        _ => println!("torch      n/a (python3 -c \"import torch\" failed or --no-torch)"),
    }
    println!(
        "optlab HVP by {}; by double backward: {double_ms:.3} ms; through the flat f64 vectors of HessianOperator::hvp: {api_ms:.3} ms",
        h.method()
    );
    println!("M-FAC step (push + IHVP), best of {}:", a.reps);
    println!("{:>10} {:>6} {:>12} {:>16}", "d", "m", "ms", "ns per d*m");
    for (d, m, ms) in &mfac {
        println!(
            "{:>10} {:>6} {:>12.3} {:>16.3}",
            d,
            m,
            ms,
            ms * 1e6 / (d * m) as f64
        );
    }
    Ok(())
}
