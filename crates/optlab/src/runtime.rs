//! Process setup for programs built on optlab: call [`init`] first in `main`, before any thread starts.
//!
//! - `CANDLE_GRAD_DO_NOT_DETACH=1`, without which candle's gradients of gradients are silently wrong (see
//!   [`crate::second_order`]).
//! - A pinned thread count: unless `RAYON_NUM_THREADS` holds a positive number, candle's CPU matmul recomputes its
//!   default thread count on every call, which on Linux parses `/proc/cpuinfo` (tens of microseconds a product; it
//!   made a data-distillation step of P10 four times slower). [`init`] computes candle's default once and stores it in
//!   `RAYON_NUM_THREADS`, so rayon's pool and candle's products use the same count they would have chosen.

/// Sets the two variables above (a valid `RAYON_NUM_THREADS` the user set is kept). Environment variables are
/// process-wide: call this before any other thread runs.
pub fn init() {
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
    let valid = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > 0);
    if !valid {
        let n = candle_core::utils::get_num_threads().max(1);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}
