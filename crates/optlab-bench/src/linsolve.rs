//! `optlab-bench linsolve`: the sparse kernels of P18's baselines against the memory bandwidth measured in the same
//! run — the 5-point Poisson mat-vec, one CG iteration and one IC(0)-PCG iteration, each next to the time its
//! bytes take at that bandwidth — and one 3×3 convolution of DCDM's network (forward + backward) by candle's
//! `conv2d` and by optlab's im2col + gemm op.

use crate::optim::stream_bandwidth;
use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use clap::Args;
use optlab::linsolve::krylov::{cg, pcg, IncompleteCholesky, Stop};
use optlab::linsolve::poisson::Grid;
use optlab::nn::conv::conv2d_same;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct LinsolveBenchArgs {
    /// Grid side of the Poisson system (side² unknowns).
    #[arg(long, default_value_t = 1024)]
    side: usize,
    /// Iterations of each timed CG / PCG run.
    #[arg(long, default_value_t = 50)]
    iters: usize,
    #[arg(long)]
    json: bool,
}

/// Best of `reps` (after one warm-up) seconds of `f`.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

pub fn run(a: LinsolveBenchArgs) -> Result<()> {
    anyhow::ensure!(a.iters >= 1, "--iters must be at least 1");
    let grid = Grid::empty(a.side)?;
    let m = grid.laplacian()?;
    let (n, nnz) = (m.n as f64, m.nnz() as f64);
    let bw = stream_bandwidth((4 * m.nnz()).max(1 << 22));
    let x: Vec<f64> = (0..m.n).map(|i| (i as f64 * 0.1).sin()).collect();
    let mut y = vec![0.0; m.n];
    let matvec = best(7, || m.matvec_into(&x, &mut y));
    // Values and column indices once, row pointers, x and y once each.
    let usz = std::mem::size_of::<usize>() as f64;
    let matvec_bytes = nnz * (8.0 + usz) + n * (usz + 16.0);
    let stop = Stop {
        tol: 1e-300,
        max_iters: a.iters,
    };
    let cg_it = best(3, || {
        cg(&m, &x, stop).map(|s| std::hint::black_box(s.x[0])).ok();
    }) / a.iters as f64;
    // The mat-vec, two dot products (3 vector reads), two axpys (4 reads, 2 writes), the direction update (2 reads,
    // 1 write) and the preconditioner copy (1 read, 1 write).
    let cg_bytes = matvec_bytes + 14.0 * 8.0 * n;
    let ic = IncompleteCholesky::new(&m)?;
    let l = ic.factor();
    let pcg_it = best(3, || {
        pcg(&m, &x, &ic, stop)
            .map(|s| std::hint::black_box(s.x[0]))
            .ok();
    }) / a.iters as f64;
    // Plus two triangular sweeps over L (values and columns) reading and writing z.
    let pcg_bytes = cg_bytes + 2.0 * (l.nnz() as f64 * (8.0 + usz) + n * (usz + 16.0));

    // One conv of DCDM's network: [10, 16, 32, 32] by [16, 16, 3, 3], forward and backward.
    let dev = Device::Cpu;
    let xv = Var::randn(0f32, 1.0, (10, 16, 32, 32), &dev)?;
    let wv = Var::randn(0f32, 0.1, (16, 16, 3, 3), &dev)?;
    let g = Tensor::randn(0f32, 1.0, (10, 16, 32, 32), &dev)?;
    let flops = 3.0 * 2.0 * 10.0 * 1024.0 * 16.0 * 144.0;
    let candle_conv = best(5, || {
        let y = xv.conv2d(&wv, 1, 1, 1, 1).and_then(|y| (y * &g)?.sum_all());
        std::hint::black_box(y.and_then(|y| y.backward()).ok());
    });
    let ours_conv = best(5, || {
        let y = conv2d_same(&xv, &wv)
            .map_err(candle_core::Error::wrap)
            .and_then(|y| (y * &g)?.sum_all());
        std::hint::black_box(y.and_then(|y| y.backward()).ok());
    });

    let rows = serde_json::json!([
        {"kernel": "matvec", "ms": matvec * 1e3, "floor_ms": matvec_bytes / bw * 1e3, "ratio_to_floor": matvec * bw / matvec_bytes},
        {"kernel": "cg-iteration", "ms": cg_it * 1e3, "floor_ms": cg_bytes / bw * 1e3, "ratio_to_floor": cg_it * bw / cg_bytes},
        {"kernel": "ic-pcg-iteration", "ms": pcg_it * 1e3, "floor_ms": pcg_bytes / bw * 1e3, "ratio_to_floor": pcg_it * bw / pcg_bytes},
    ]);
    let conv = serde_json::json!({
        "shape": "[10,16,32,32] * [16,16,3,3], forward + backward",
        "candle_ms": candle_conv * 1e3, "optlab_ms": ours_conv * 1e3,
        "candle_gflops": flops / candle_conv / 1e9, "optlab_gflops": flops / ours_conv / 1e9,
    });
    if a.json {
        println!(
            "{}",
            serde_json::json!({"bench": "linsolve", "side": a.side, "unknowns": m.n, "nnz": m.nnz(),
                "stream_bandwidth_gbs": bw / 1e9, "kernels": rows, "conv": conv})
        );
        return Ok(());
    }
    println!(
        "optlab-bench linsolve: 5-point Poisson {0}x{0} ({1} unknowns, {2} non-zeros), stream bandwidth {3:.1} GB/s",
        a.side,
        m.n,
        m.nnz(),
        bw / 1e9
    );
    println!(
        "{:<18} {:>10} {:>10} {:>10}",
        "kernel", "ms", "floor ms", "x floor"
    );
    for r in rows.as_array().into_iter().flatten() {
        println!(
            "{:<18} {:>10.3} {:>10.3} {:>10.2}",
            r["kernel"].as_str().unwrap_or(""),
            r["ms"].as_f64().unwrap_or(f64::NAN),
            r["floor_ms"].as_f64().unwrap_or(f64::NAN),
            r["ratio_to_floor"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "DCDM conv {}: candle conv2d {:.2} ms ({:.1} GFLOP/s), optlab conv2d_same {:.2} ms ({:.1} GFLOP/s)",
        conv["shape"].as_str().unwrap_or(""),
        candle_conv * 1e3,
        flops / candle_conv / 1e9,
        ours_conv * 1e3,
        flops / ours_conv / 1e9
    );
    Ok(())
}
