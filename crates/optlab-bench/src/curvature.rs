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

/// M-FAC step time (replace one window gradient + one inverse-Hessian-vector product) against d and m: the
/// cost should grow linearly in d (O(dm + m³)).
fn mfac_scaling(reps: usize) -> Result<()> {
    use optlab::optim::mfac::MfacInverse;
    println!("M-FAC step (push + IHVP), best of {reps}:");
    println!("{:>10} {:>6} {:>12} {:>16}", "d", "m", "ms", "ns per d*m");
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
            println!(
                "{:>10} {:>6} {:>12.3} {:>16.3}",
                d,
                m,
                ms,
                ms * 1e6 / (d * m) as f64
            );
        }
    }
    Ok(())
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
    let v: Vec<f64> = (0..h.dim())
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let grad_ms = best_ms(a.reps, || {
        h.loss()?.backward()?;
        Ok(())
    })?;
    let hvp_ms = best_ms(a.reps, || {
        h.hvp(&v)?;
        Ok(())
    })?;
    let torch = a.torch.run("torch_curvature.py", &[a.reps.to_string()]);
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
    mfac_scaling(a.reps)?;
    if let Some(t) = torch {
        let (g, hv) = (
            t["grad_ms"].as_f64().unwrap_or(f64::NAN),
            t["hvp_ms"].as_f64().unwrap_or(f64::NAN),
        );
        println!("{:<10} {:>12.3} {:>12.3} {:>11.2}x", "torch", g, hv, hv / g);
        println!("optlab HVP / torch HVP: {:.2}x", hvp_ms / hv);
    } else {
        println!("torch      n/a (python3 -c \"import torch\" failed or --no-torch)");
    }
    Ok(())
}
