//! Learning-rate schedule refinement (P33, "When, Why and How Much? Adaptive Learning Rate Scheduling by
//! Refinement"): from a previous run's gradient norms G_t, median-filtered over a window of `tau`·T steps, the
//! refined schedule is η_t ∝ w_t · Σ_{p>t} w_p with w_t = G_t⁻², normalised to a maximum of 1. With constant
//! gradient norms this is linear decay; rising norms early give a warmup, and the sum makes it end at 0.
//!
//! A refined schedule is saved as JSON (`{"kind": "optlab-refined-schedule", "factors": [...]}`) and used with
//! `--schedule file:refined.json`; over a run of a different length it is resampled linearly.

use crate::{Error, Result};

/// Median filter with an odd window of `width` (clipped at the ends).
pub fn median_filter(x: &[f64], width: usize) -> Vec<f64> {
    let half = width.max(1) / 2;
    (0..x.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(x.len()));
            let mut w: Vec<f64> = x[a..b].to_vec();
            w.sort_by(f64::total_cmp);
            let k = w.len();
            if k % 2 == 1 {
                w[k / 2]
            } else {
                0.5 * (w[k / 2 - 1] + w[k / 2])
            }
        })
        .collect()
}

/// The refined schedule's factors for gradient norms `grad_norms` (one per step), median window `tau`·T.
pub fn refine(grad_norms: &[f64], tau: f64) -> Result<Vec<f64>> {
    if grad_norms.len() < 2 {
        return Err(Error::invalid(
            "refinement needs the gradient norms of at least two steps",
        ));
    }
    if !(0.0..=1.0).contains(&tau) {
        return Err(Error::invalid(format!("tau={tau} must be in [0, 1]")));
    }
    if let Some(g) = grad_norms.iter().find(|g| !(g.is_finite() && **g > 0.0)) {
        return Err(Error::invalid(format!(
            "gradient norms must be positive and finite, found {g}"
        )));
    }
    let t = grad_norms.len();
    let width = ((tau * t as f64).round() as usize).max(1) | 1;
    let g = median_filter(grad_norms, width);
    let w: Vec<f64> = g.iter().map(|x| 1.0 / (x * x)).collect();
    let mut tail = 0.0;
    let mut eta = vec![0.0; t];
    for i in (0..t).rev() {
        eta[i] = w[i] * tail;
        tail += w[i];
    }
    let max = eta.iter().copied().fold(0.0, f64::max);
    Ok(eta.into_iter().map(|e| e / max).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_norms_give_linear_decay() {
        let eta = refine(&vec![2.0; 101], 0.1).unwrap();
        for (t, e) in eta.iter().enumerate() {
            assert!((e - (100 - t) as f64 / 100.0).abs() < 1e-12, "{t}: {e}");
        }
    }

    #[test]
    fn large_early_norms_give_a_warmup() {
        // Gradient norms that start large and settle (as in training) make w_t = G_t⁻² small early: the refined
        // schedule warms up over those steps, peaks, then anneals to 0 at the end.
        let mut g: Vec<f64> = (0..20).map(|t| 4.0 - 3.0 * t as f64 / 19.0).collect();
        g.extend(std::iter::repeat_n(1.0, 80));
        let eta = refine(&g, 0.0).unwrap();
        let peak = eta
            .iter()
            .copied()
            .enumerate()
            .fold((0, 0.0), |b, (i, e)| if e > b.1 { (i, e) } else { b })
            .0;
        assert!((15..=25).contains(&peak), "peak at {peak}");
        assert!(eta[0] < 0.1 && eta[99] == 0.0 && (eta[peak] - 1.0).abs() < 1e-12);
        assert!(refine(&[1.0], 0.1).is_err() && refine(&[1.0, f64::NAN], 0.1).is_err());
    }

    #[test]
    fn median_filter_removes_spikes() {
        assert_eq!(
            median_filter(&[1.0, 1.0, 50.0, 1.0, 1.0], 3),
            vec![1.0, 1.0, 1.0, 1.0, 1.0]
        );
    }
}
