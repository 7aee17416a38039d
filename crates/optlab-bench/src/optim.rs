//! `optlab-bench optim`: the step time of every optimizer over 10M f32 parameters, next to the memory-bandwidth
//! floor measured in the same run (bytes the step must move / the machine's copy bandwidth) and, where PyTorch
//! has the method, torch's `fused=True` (or `foreach=True`) step on the same tensor with the same threads.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use clap::Args;
use optlab::nn::Param;
use optlab::optim::from_spec;
use rayon::prelude::*;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct OptimBenchArgs {
    /// Parameters (one f32 tensor).
    #[arg(long, default_value_t = 10_000_000)]
    pub params: usize,
    /// Timed steps per repetition (best of 3 is reported).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[command(flatten)]
    pub torch: crate::harness::TorchSide,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// (spec, f32 words read + written per parameter by one step, the PyTorch constructor or "").
const CASES: &[(&str, usize, &str)] = &[
    (
        "sgd:lr=0.01",
        3,
        "torch.optim.SGD(p, lr=0.01, foreach=True)",
    ),
    (
        "sgd:lr=0.01,momentum=0.9",
        5,
        "torch.optim.SGD(p, lr=0.01, momentum=0.9, fused=True)",
    ),
    (
        "adam:lr=1e-3",
        7,
        "torch.optim.Adam(p, lr=1e-3, fused=True)",
    ),
    (
        "adamw:lr=1e-3,weight_decay=0.01",
        7,
        "torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01, fused=True)",
    ),
    (
        "adagrad:lr=0.01",
        5,
        "torch.optim.Adagrad(p, lr=0.01, fused=True)",
    ),
    (
        "rmsprop:lr=0.01",
        5,
        "torch.optim.RMSprop(p, lr=0.01, foreach=True)",
    ),
    ("lion:lr=1e-4", 5, ""),
    ("diffgrad:lr=1e-3", 9, ""),
    ("adamp:lr=1e-3", 7, ""),
    ("sgdp:lr=0.01,momentum=0.9", 5, ""),
    ("nsgd:lr=0.01", 7, ""),
];

/// The memory bandwidth an optimizer step can reach, measured the way a step moves memory: an in-place
/// update x ← a·x + y over two arrays the size of the parameters (two reads and one write per element, no
/// write-allocate traffic), on rayon's threads, best of 7 after a warm-up. Bytes per second.
pub(crate) fn stream_bandwidth(n: usize) -> f64 {
    let mut x = vec![1.0f32; n];
    let y = vec![0.5f32; n];
    let mut best = f64::MAX;
    for rep in 0..8 {
        let t = Instant::now();
        x.par_chunks_mut(1 << 15)
            .zip(y.par_chunks(1 << 15))
            .for_each(|(xs, ys)| {
                for (xi, &yi) in xs.iter_mut().zip(ys) {
                    *xi = *xi * 0.999 + yi;
                }
            });
        if rep > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(&x);
    (3 * n * 4) as f64 / best
}

fn step_ms(spec: &str, n: usize, steps: usize) -> Result<f64> {
    let p = Var::from_tensor(&Tensor::randn(0f32, 1.0, n, &Device::Cpu)?)?;
    let g = Tensor::randn(0f32, 1e-3, n, &Device::Cpu)?;
    // loss = <p, g> has gradient g.
    let grads = p.as_tensor().mul(&g)?.sum_all()?.backward()?;
    let params = [Param {
        name: "p".into(),
        var: p,
    }];
    let mut opt = from_spec(spec)?;
    for _ in 0..3 {
        opt.step(&params, &grads)?;
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..steps {
            opt.step(&params, &grads)?;
        }
        best = best.min(t.elapsed().as_secs_f64() / steps as f64);
    }
    Ok(best * 1e3)
}

pub fn run(a: OptimBenchArgs) -> Result<()> {
    anyhow::ensure!(a.steps >= 1, "--steps must be at least 1");
    let bw = stream_bandwidth(a.params);
    let mut rows = Vec::new();
    for (spec, words, _) in CASES {
        let ms = step_ms(spec, a.params, a.steps)?;
        let floor_ms = (*words * 4 * a.params) as f64 / bw * 1e3;
        rows.push((spec, ms, floor_ms));
    }
    let cases: Vec<serde_json::Value> = CASES
        .iter()
        .filter(|c| !c.2.is_empty())
        .map(|(s, _, ctor)| serde_json::json!({"name": s, "ctor": ctor}))
        .collect();
    let torch = a.torch.run(
        "torch_optim.py",
        &[
            serde_json::json!(cases).to_string(),
            a.params.to_string(),
            a.steps.to_string(),
        ],
    );
    let out: Vec<serde_json::Value> = rows
        .iter()
        .map(|(spec, ms, floor)| {
            let t = torch.as_ref().and_then(|v| v[**spec].as_f64());
            serde_json::json!({
                "optimizer": spec, "optlab_ms": ms, "floor_ms": floor, "ratio_to_floor": ms / floor,
                "torch_ms": t, "ratio_to_torch": t.map(|t| ms / t),
            })
        })
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"bench": "optim", "params": a.params, "stream_bandwidth_gbs": bw / 1e9, "cases": out})
        );
        return Ok(());
    }
    println!(
        "optlab-bench optim: {} f32 parameters, stream bandwidth {:.1} GB/s (x = a*x + y, best of 7), step = best of 3 x {} steps",
        a.params,
        bw / 1e9,
        a.steps
    );
    println!(
        "{:<34} {:>10} {:>10} {:>9} {:>10} {:>9}",
        "optimizer", "optlab ms", "floor ms", "/ floor", "torch ms", "/ torch"
    );
    for r in &out {
        let t = r["torch_ms"].as_f64();
        println!(
            "{:<34} {:>10.3} {:>10.3} {:>8.2}x {:>10} {:>9}",
            r["optimizer"].as_str().unwrap_or(""),
            r["optlab_ms"].as_f64().unwrap_or(f64::NAN),
            r["floor_ms"].as_f64().unwrap_or(f64::NAN),
            r["ratio_to_floor"].as_f64().unwrap_or(f64::NAN),
            t.map_or("n/a".into(), |t| format!("{t:.3}")),
            r["ratio_to_torch"]
                .as_f64()
                .map_or("n/a".into(), |x| format!("{x:.2}x")),
        );
    }
    Ok(())
}
