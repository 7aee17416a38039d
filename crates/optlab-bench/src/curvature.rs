//! `optlab-bench curvature`: the cost of one exact Hessian-vector product as a multiple of one gradient on MLP
//! 784-1024-1024-10 (batch 256), on the MNIST-size CNN of `optlab-bench train` (channels 32-64, batch 128) and on
//! its char-LM transformer (2 layers, dim 64, 4 heads, LayerNorm; 32 windows of 64 tokens over 62 characters), with
//! PyTorch's double backward measured in the same run when installed.

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

/// The best time (ms) of `f` over `reps` runs after a warm-up run.
fn best_ms(reps: usize, f: impl FnMut() -> Result<()>) -> Result<f64> {
    let [best] = best_ms_interleaved(reps, [Box::new(f)])?;
    Ok(best)
}

/// The best time (ms) of each task over `reps` rounds that run every task once in turn (after one warm-up
/// round), so that the ratios between them see the same machine: timed one task after another, a drift of
/// the machine's speed between the two moved an HVP-to-gradient ratio by up to 20% (2.01x and 2.45x in two
/// runs of one binary).
fn best_ms_interleaved<'a, const N: usize>(
    reps: usize,
    mut tasks: [Box<dyn FnMut() -> Result<()> + 'a>; N],
) -> Result<[f64; N]> {
    for f in tasks.iter_mut() {
        f()?;
    }
    let mut best = [f64::MAX; N];
    for _ in 0..reps {
        for (f, b) in tasks.iter_mut().zip(best.iter_mut()) {
            let t = Instant::now();
            f()?;
            *b = b.min(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(best)
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

/// The char-LM transformer of `optlab-bench train` on 32 windows of 64 tokens (ids and next-token labels as there).
fn lm_case() -> Result<(ModelHessian, Sequential)> {
    let (vocab, ctx, batch) = (62, 64, 32);
    let spec = ModelSpec::parse("transformer:layers=2,dim=64,heads=4,mlp=4,norm=ln")?;
    let model = Sequential::new(&spec, &[ctx], vocab, 0, DType::F32)?;
    let ids: Vec<f32> = (0..batch * ctx).map(|i| (i * 7 % vocab) as f32).collect();
    let labels: Vec<u32> = (0..batch * ctx).map(|i| (i * 11 % vocab) as u32).collect();
    let x = Tensor::from_vec(ids, (batch, ctx), &Device::Cpu)?;
    let y = Tensor::from_vec(labels, (batch, ctx), &Device::Cpu)?;
    Ok((ModelHessian::new(&model, x, y, true)?, model))
}

/// A model of `spec` (10 classes, f32) with a batch of `batch` inputs of `shape` and its Hessian operator.
fn case(spec: &str, shape: &[usize], batch: usize) -> Result<(ModelHessian, Sequential)> {
    let model = Sequential::new(&ModelSpec::parse(spec)?, shape, 10, 0, DType::F32)?;
    let dims: Vec<usize> = std::iter::once(batch)
        .chain(shape.iter().copied())
        .collect();
    let x = Tensor::randn(0f32, 1.0, dims, &Device::Cpu)?;
    let y = Tensor::from_vec(
        (0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(),
        batch,
        &Device::Cpu,
    )?;
    Ok((ModelHessian::new(&model, x, y, true)?, model))
}

/// One model's costs (ms): a first-order gradient, H·v by the operator's own method, and by double backward
/// (the general path, which PyTorch's side also takes); v in the parameters' own tensors (its `grad_outputs`).
struct Costs {
    grad: f64,
    hvp: f64,
    double: f64,
    method: &'static str,
}

fn costs((h, model): &(ModelHessian, Sequential), reps: usize) -> Result<Costs> {
    let params = model.params();
    let ts: Vec<&Tensor> = params.iter().map(|p| p.tensor()).collect();
    let vs = ts
        .iter()
        .map(|t| t.ones_like())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let [grad, hvp, double] = best_ms_interleaved(
        reps,
        [
            Box::new(|| {
                optlab::gradients(&h.loss()?, false)?;
                Ok(())
            }),
            Box::new(|| {
                h.hvp_tensors(&vs)?;
                Ok(())
            }),
            Box::new(|| {
                optlab::hvp(&h.loss()?, &ts, &vs)?;
                Ok(())
            }),
        ],
    )?;
    Ok(Costs {
        grad,
        hvp,
        double,
        method: h.method(),
    })
}

impl Costs {
    fn json(&self, torch: Option<(f64, f64)>) -> serde_json::Value {
        serde_json::json!({
            "grad_ms": self.grad,
            "hvp_ms": self.hvp,
            "hvp_method": self.method,
            "hvp_over_grad": self.hvp / self.grad,
            "hvp_double_backward_ms": self.double,
            "torch": torch.map(|(g, h)| serde_json::json!({"grad_ms": g, "hvp_ms": h})),
            "ratio_hvp_optlab_over_torch": torch.map(|(_, h)| self.hvp / h),
        })
    }

    fn print(&self, name: &str, torch: Option<(f64, f64)>) {
        println!(
            "{:<14} {:>12.3} {:>12.3} {:>11.2}x   (H v by {}; by double backward {:.3} ms)",
            format!("optlab {name}"),
            self.grad,
            self.hvp,
            self.hvp / self.grad,
            self.method,
            self.double
        );
        match torch {
            Some((g, h)) => println!(
                "{:<14} {:>12.3} {:>12.3} {:>11.2}x   optlab H v / torch H v: {:.2}x",
                format!("torch {name}"),
                g,
                h,
                h / g,
                self.hvp / h
            ),
            None => {
                println!("torch {name:<8} n/a (python3 -c \"import torch\" failed or --no-torch)")
            }
        }
    }
}

pub fn run(a: CurvatureBenchArgs) -> Result<()> {
    anyhow::ensure!(a.reps >= 1, "--reps must be at least 1");
    optlab::require_second_order()?;
    let mlp = case("mlp:hidden=1024-1024", &[784], 256)?;
    let cnn = case("cnn:channels=32-64", &[1, 28, 28], 128)?;
    let (h, _) = &mlp;
    let api_ms = best_ms(a.reps, || {
        h.hvp(&vec![1.0; h.dim()])?;
        Ok(())
    })?;
    let lm = lm_case()?;
    let (mlp, cnn, lm) = (
        costs(&mlp, a.reps)?,
        costs(&cnn, a.reps)?,
        costs(&lm, a.reps)?,
    );
    let mfac = mfac_scaling(a.reps)?;
    let torch = a.torch.run("torch_curvature.py", &[a.reps.to_string()]);
    let torch_pair = |g: &str, h: &str| {
        let t = torch.as_ref()?;
        Some((t[g].as_f64()?, t[h].as_f64()?))
    };
    let (torch_mlp, torch_cnn, torch_lm) = (
        torch_pair("grad_ms", "hvp_ms"),
        torch_pair("cnn_grad_ms", "cnn_hvp_ms"),
        torch_pair("lm_grad_ms", "lm_hvp_ms"),
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "curvature",
                "parameters": h.dim(),
                "mlp": mlp.json(torch_mlp),
                "cnn": cnn.json(torch_cnn),
                "lm": lm.json(torch_lm),
                "mlp_hvp_f64_api_ms": api_ms,
                "mfac": mfac.iter().map(|&(d, m, ms)| serde_json::json!({"d": d, "m": m, "ms": ms})).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    println!(
        "optlab-bench curvature: MLP 784-1024-1024-10 (batch 256, {} parameters), CNN 1x28x28 channels 32-64 \
         (batch 128) and the char-LM transformer 2x64 (batch 32x64), f32, best of {}",
        h.dim(),
        a.reps
    );
    println!(
        "{:<14} {:>12} {:>12} {:>12}",
        "", "gradient ms", "HVP ms", "HVP / grad"
    );
    mlp.print("MLP", torch_mlp);
    cnn.print("CNN", torch_cnn);
    lm.print("LM", torch_lm);
    println!("MLP H v through the flat f64 vectors of HessianOperator::hvp: {api_ms:.3} ms");
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
