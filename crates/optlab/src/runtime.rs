//! Process setup for programs built on optlab: call [`init`] first in `main`, before any thread starts.
//!
//! - `CANDLE_GRAD_DO_NOT_DETACH=1`, without which candle's gradients of gradients are silently wrong (see
//!   [`crate::second_order`]).
//! - A pinned thread count: unless `RAYON_NUM_THREADS` holds a positive number, candle's CPU matmul recomputes its
//!   default thread count on every call, which on Linux parses `/proc/cpuinfo` (tens of microseconds a product; it
//!   made a data-distillation step of P10 four times slower). [`init`] computes candle's default once and stores it in
//!   `RAYON_NUM_THREADS`, so rayon's pool and candle's products use the same count they would have chosen.
//! - No spinning in candle's element-wise worker pool, unless `CANDLE_BARRIER_POOL_SPIN_LIMIT` is set: by default
//!   its threads spin 25,000 times after every parallel element-wise op, on the cores rayon's pool (the matmuls,
//!   the fused kernels) needs next. Measured on 2 cores (`optlab-bench train`, two runs each): MLP 784 steps
//!   25.4/26.7 → 22.1/21.1 ms, the MNIST-size CNN 81.6/79.3 → 78.8/70.9 ms, the transformer 43.3/41.8 →
//!   38.5/35.8 ms.

/// Sets the variables above (a valid `RAYON_NUM_THREADS` and any `CANDLE_BARRIER_POOL_SPIN_LIMIT` the user set are
/// kept). Environment variables are process-wide: call this before any other thread runs.
pub fn init() {
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
    let valid = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > 0);
    if !valid {
        let n = candle_core::utils::get_num_threads().max(1);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}
