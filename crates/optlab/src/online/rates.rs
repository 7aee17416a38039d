//! The last-iterate rate experiment of P06: for each horizon T and each seed, CSMD runs T steps; the
//! suboptimality F(x_{T+1}) + h(x_{T+1}) − f* of the last iterate (and of the averaged iterate) is summarised by its
//! median and 95% quantile over seeds (the paper's bounds hold with high probability), and log-log slopes are
//! fitted to the medians next to the theory's.

use super::csmd::Csmd;
use super::problems::StochasticObjective;
use super::steps::StepShape;
use crate::rng::{rng_for, Stream};
use crate::{Error, Result};
use serde::Serialize;

/// Horizons, seeds and the base seed.
#[derive(Debug, Clone, PartialEq)]
pub struct RateConfig {
    pub horizons: Vec<u64>,
    pub seeds: usize,
    pub seed: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            horizons: vec![100, 300, 1000, 3000, 10_000, 30_000, 100_000],
            seeds: 100,
            seed: 0,
        }
    }
}

/// The largest number of stochastic gradients one experiment may take (seeds × Σ horizons).
pub const MAX_GRADIENTS: f64 = 2e10;

impl RateConfig {
    /// Checks horizons (>= 1, increasing) and seeds (1..=10 000), and that the work is bounded.
    pub fn check(&self) -> Result<()> {
        if self.horizons.is_empty() {
            return Err(Error::invalid("rate: give at least one horizon"));
        }
        if self.horizons.contains(&0) || self.horizons.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(format!(
                "rate: horizons must be >= 1 and increasing, got {:?}",
                self.horizons
            )));
        }
        if !(1..=10_000).contains(&self.seeds) {
            return Err(Error::invalid(format!(
                "rate: seeds must be in 1..=10000, got {}",
                self.seeds
            )));
        }
        let work = self.seeds as f64 * self.horizons.iter().map(|&t| t as f64).sum::<f64>();
        if work > MAX_GRADIENTS {
            return Err(Error::invalid(format!(
                "rate: {work:.3e} stochastic gradients (seeds x sum of horizons) is more than the {MAX_GRADIENTS:.0e} allowed"
            )));
        }
        Ok(())
    }
}

/// The median and 95% quantile of a suboptimality over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub q95: f64,
}

/// One horizon's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatePoint {
    pub horizon: u64,
    pub last: Spread,
    pub average: Spread,
}

/// What the experiment measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateReport {
    pub method: String,
    pub f_star: f64,
    pub seeds: usize,
    pub points: Vec<RatePoint>,
    /// Least-squares slope of log median suboptimality against log T, last iterate.
    pub last_slope: f64,
    /// The same for the averaged iterate.
    pub average_slope: f64,
    /// The theory's exponent for the rule (up to log factors), if it predicts one.
    pub theory_slope: Option<f64>,
}

/// The exponent of T in the rule's guarantee: −1/2 (or 1/p − 1 under p-th-moment noise) for the convex rules,
/// −1 for the strongly convex one, none for a constant step.
pub fn theory_slope(shape: StepShape) -> Option<f64> {
    match shape {
        StepShape::Const => None,
        StepShape::Horizon { p } | StepShape::Anytime { p } => Some(1.0 / p - 1.0),
        StepShape::Linear => Some(-0.5),
        StepShape::Strong { .. } => Some(-1.0),
    }
}

/// Runs every (horizon, seed) pair on all cores; the results do not depend on the number of threads.
pub fn measure(
    f: &dyn StochasticObjective,
    csmd: &Csmd,
    f_star: f64,
    cfg: &RateConfig,
) -> Result<RateReport> {
    cfg.check()?;
    let h = csmd.geometry.composite;
    let total = |x: &[f64]| f.value(x) + h.value(x);
    let jobs: Vec<(usize, usize)> = (0..cfg.horizons.len())
        .flat_map(|k| (0..cfg.seeds).map(move |s| (k, s)))
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    let mut gaps = vec![(0.0, 0.0); jobs.len()];
    std::thread::scope(|scope| {
        let chunks: Vec<_> = (0..workers)
            .map(|w| {
                let jobs = &jobs;
                let total = &total;
                scope.spawn(move || {
                    (w..jobs.len())
                        .step_by(workers)
                        .map(|j| {
                            let (k, s) = jobs[j];
                            let horizon = cfg.horizons[k];
                            let mut rng =
                                rng_for(cfg.seed.wrapping_add(s as u64), Stream::Solver, horizon);
                            let it = csmd.run(f, horizon, &mut rng);
                            (j, (total(&it.last) - f_star, total(&it.average) - f_star))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for c in chunks {
            for (j, v) in c.join().expect("a rate worker panicked") {
                gaps[j] = v;
            }
        }
    });
    let mut points = Vec::with_capacity(cfg.horizons.len());
    for (k, &horizon) in cfg.horizons.iter().enumerate() {
        let of = |pick: fn(&(f64, f64)) -> f64| {
            let v: Vec<f64> = gaps[k * cfg.seeds..(k + 1) * cfg.seeds]
                .iter()
                .map(pick)
                .collect();
            spread(v)
        };
        points.push(RatePoint {
            horizon,
            last: of(|g| g.0),
            average: of(|g| g.1),
        });
    }
    let slope_of = |pick: fn(&RatePoint) -> f64| {
        let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.horizon as f64, pick(p))).collect();
        log_log_slope(&xy)
    };
    Ok(RateReport {
        method: csmd.to_string(),
        f_star,
        seeds: cfg.seeds,
        last_slope: slope_of(|p| p.last.median),
        average_slope: slope_of(|p| p.average.median),
        theory_slope: theory_slope(csmd.rule.shape),
        points,
    })
}

/// Median and 95% quantile (linear interpolation between order statistics).
pub fn spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(|a, b| a.total_cmp(b));
    Spread {
        median: quantile(&v, 0.5),
        q95: quantile(&v, 0.95),
    }
}

/// The q-quantile of sorted values (NaN for none).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    if i + 1 < sorted.len() {
        sorted[i] + frac * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

/// The least-squares slope of log y against log x over the points with x > 0 and y > 1e-12 (NaN with fewer
/// than two).
pub fn log_log_slope(xy: &[(f64, f64)]) -> f64 {
    let pts: Vec<(f64, f64)> = xy
        .iter()
        // Values at rounding level (a regret of 1e-16) carry no slope.
        .filter(|(x, y)| *x > 0.0 && *y > 1e-12 && y.is_finite())
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    if pts.len() < 2 {
        return f64::NAN;
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = pts.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    sxy / sxx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_and_quantiles() {
        let xy: Vec<(f64, f64)> = [10.0, 100.0, 1000.0]
            .iter()
            .map(|&x: &f64| (x, 3.0 * x.powf(-0.5)))
            .collect();
        assert!((log_log_slope(&xy) + 0.5).abs() < 1e-12);
        let s = spread((1..=101).map(|v| v as f64).collect());
        assert_eq!((s.median, s.q95), (51.0, 96.0));
        assert!(RateConfig {
            horizons: vec![10, 5],
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(RateConfig {
            horizons: vec![1_000_000_000],
            seeds: 100,
            seed: 0
        }
        .check()
        .is_err());
    }
}
