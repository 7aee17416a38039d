//! Regret of online learners on SEA sequences (P32): Σ_t f_t(x_t) − min_x Σ_t f_t(x) with the comparator computed
//! exactly (closed form for the least-squares losses, a converged projected-gradient solve for the log loss) at
//! log-spaced checkpoints, over seeds, next to the accumulated σ²_{1:T} and Σ²_{1:T} the bounds are stated in.

use super::learners::LearnerConfig;
use super::rates::{log_log_slope, quantile};
use super::sea::{logloss_comparator, lsq_comparator, Round, Sea, SeaConfig, SeaLoss};
use crate::{Error, Result};
use serde::Serialize;

/// Rounds, checkpoints, seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct RegretConfig {
    pub rounds: u64,
    pub seeds: usize,
    pub seed: u64,
}

/// The most rounds one run may have, and the most stored log-loss values (rounds × dim).
pub const MAX_ROUNDS: u64 = 100_000_000;
pub const MAX_STORED: u64 = 50_000_000;

impl RegretConfig {
    /// Checks the sizes against the sequence (the log loss stores every return vector for its comparator).
    pub fn check(&self, seq: &SeaConfig) -> Result<()> {
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(Error::invalid(format!(
                "regret: rounds must be in 1..={MAX_ROUNDS}, got {}",
                self.rounds
            )));
        }
        if !(1..=10_000).contains(&self.seeds) {
            return Err(Error::invalid(format!(
                "regret: seeds must be in 1..=10000, got {}",
                self.seeds
            )));
        }
        // Per worker thread: the sequence's few d-vectors and, for the log loss, every return vector.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let stored = if seq.on_simplex() {
            self.rounds as f64 * seq.dim as f64
        } else {
            0.0
        };
        crate::memory::check(
            "the regret experiment",
            workers * 8.0 * (stored + 16.0 * seq.dim as f64),
            "use fewer rounds or a smaller dim",
        )?;
        if seq.on_simplex() && self.rounds.saturating_mul(seq.dim as u64) > MAX_STORED {
            return Err(Error::invalid(format!(
                "regret: the log-loss comparator stores rounds x dim = {} values, more than {MAX_STORED}; use fewer rounds or a smaller dim",
                self.rounds.saturating_mul(seq.dim as u64)
            )));
        }
        Ok(())
    }

    /// Checkpoints: about five per decade up to `rounds`, always ending at `rounds`.
    pub fn checkpoints(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let mut k = 0;
        loop {
            let t = (10f64.powf(1.0 + k as f64 / 5.0)).round() as u64;
            if t >= self.rounds {
                break;
            }
            if out.last() != Some(&t) {
                out.push(t);
            }
            k += 1;
        }
        out.push(self.rounds);
        out
    }
}

/// A learner's regret at one checkpoint over seeds, with the sequence's accumulated variances (means over seeds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegretPoint {
    pub t: u64,
    pub median: f64,
    pub q90: f64,
    pub mean: f64,
    pub sigma2_sum: f64,
    #[serde(rename = "Sigma2_sum")]
    pub variation_sum: f64,
}

/// A learner's curve and its fitted log-log slope (regret against T over the checkpoints with T ≥ 100).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegretCurve {
    pub learner: String,
    pub points: Vec<RegretPoint>,
    pub slope: f64,
    /// regret / (√σ²_{1:T} + √Σ²_{1:T}) at the last checkpoint (the bound's shape, up to its constant).
    pub ratio_to_bound: f64,
}

/// The regret of every learner on the sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegretReport {
    pub sequence: SeaConfig,
    pub rounds: u64,
    pub seeds: usize,
    pub curves: Vec<RegretCurve>,
}

/// One seed's regret at one checkpoint, with the sequence's accumulated variances so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checkpoint {
    pub t: u64,
    pub regret: f64,
    pub sigma2_sum: f64,
    pub variation_sum: f64,
}

/// One learner, one seed: its regret at each checkpoint.
pub fn play(
    seq: &SeaConfig,
    learner: &LearnerConfig,
    rounds: u64,
    checkpoints: &[u64],
    seed: u64,
) -> Result<Vec<Checkpoint>> {
    let mut sea = Sea::new(seq.clone(), seed)?;
    let mut l = learner.build(seq)?;
    let d = seq.dim;
    let mut round = Round {
        point: vec![0.0; d],
    };
    let mut g = vec![0.0; d];
    let (mut s1, mut s2) = (vec![0.0; d], vec![0.0; d]);
    let mut returns: Vec<f64> = Vec::new();
    if seq.on_simplex() {
        returns.reserve_exact(rounds as usize * d);
    }
    let mut cum = 0.0;
    let mut out = Vec::with_capacity(checkpoints.len());
    let mut next = 0;
    for t in 1..=rounds {
        let x = l.decision();
        sea.next(x, &mut round);
        cum += sea.loss_and_gradient(&round, x, &mut g);
        if seq.on_simplex() {
            returns.extend_from_slice(&round.point);
        } else {
            for i in 0..d {
                s1[i] += round.point[i];
                s2[i] += round.point[i] * round.point[i];
            }
        }
        l.update(&g);
        if next < checkpoints.len() && checkpoints[next] == t {
            let best = match seq.loss {
                SeaLoss::LogLoss => logloss_comparator(&returns, d).1,
                SeaLoss::Lsq | SeaLoss::Ridge { .. } => {
                    lsq_comparator(
                        sea.design(),
                        seq.strong_convexity(),
                        seq.radius,
                        &s1,
                        &s2,
                        t,
                    )
                    .1
                }
            };
            out.push(Checkpoint {
                t,
                regret: cum - best,
                sigma2_sum: sea.sigma2_sum,
                variation_sum: sea.variation_sum,
            });
            next += 1;
        }
    }
    Ok(out)
}

/// Every learner over `cfg.seeds` seeds (seed s plays the same noise draws for every learner), on all cores.
pub fn regret(
    seq: &SeaConfig,
    learners: &[LearnerConfig],
    cfg: &RegretConfig,
) -> Result<RegretReport> {
    seq.check()?;
    cfg.check(seq)?;
    if learners.is_empty() {
        return Err(Error::invalid("regret: give at least one learner"));
    }
    for l in learners {
        l.build(seq)?;
    }
    let checkpoints = cfg.checkpoints();
    let jobs: Vec<(usize, usize)> = (0..learners.len())
        .flat_map(|k| (0..cfg.seeds).map(move |s| (k, s)))
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    let mut results: Vec<Vec<Checkpoint>> = vec![Vec::new(); jobs.len()];
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (jobs, checkpoints) = (&jobs, &checkpoints);
                scope.spawn(move || -> Result<Vec<(usize, Vec<Checkpoint>)>> {
                    (w..jobs.len())
                        .step_by(workers)
                        .map(|j| {
                            let (k, s) = jobs[j];
                            let seed = cfg.seed.wrapping_add(s as u64);
                            Ok((j, play(seq, &learners[k], cfg.rounds, checkpoints, seed)?))
                        })
                        .collect()
                })
            })
            .collect();
        for h in handles {
            for (j, r) in h.join().expect("a regret worker panicked")? {
                results[j] = r;
            }
        }
        Ok(())
    })?;
    let mut curves = Vec::with_capacity(learners.len());
    for (k, learner) in learners.iter().enumerate() {
        let runs = &results[k * cfg.seeds..(k + 1) * cfg.seeds];
        let points: Vec<RegretPoint> = checkpoints
            .iter()
            .enumerate()
            .map(|(c, &t)| {
                let mut r: Vec<f64> = runs.iter().map(|run| run[c].regret).collect();
                let n = r.len() as f64;
                let mean = r.iter().sum::<f64>() / n;
                r.sort_by(|a, b| a.total_cmp(b));
                RegretPoint {
                    t,
                    median: quantile(&r, 0.5),
                    q90: quantile(&r, 0.9),
                    mean,
                    sigma2_sum: runs.iter().map(|run| run[c].sigma2_sum).sum::<f64>() / n,
                    variation_sum: runs.iter().map(|run| run[c].variation_sum).sum::<f64>() / n,
                }
            })
            .collect();
        let xy: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.t >= 100)
            .map(|p| (p.t as f64, p.median))
            .collect();
        let last = points.last().expect("at least one checkpoint");
        let bound = last.sigma2_sum.sqrt() + last.variation_sum.sqrt();
        curves.push(RegretCurve {
            learner: learner.to_string(),
            slope: log_log_slope(&xy),
            ratio_to_bound: if bound > 0.0 {
                last.median / bound
            } else {
                f64::NAN
            },
            points,
        });
    }
    Ok(RegretReport {
        sequence: seq.clone(),
        rounds: cfg.rounds,
        seeds: cfg.seeds,
        curves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Spec;

    fn learners(names: &[&str]) -> Vec<LearnerConfig> {
        names
            .iter()
            .map(|s| LearnerConfig::from_spec(&mut Spec::parse(s).unwrap()).unwrap())
            .collect()
    }

    /// Without noise and drift the hint is exact and optimistic OMD's regret stops growing; with noise it grows.
    #[test]
    fn optimistic_regret_is_flat_without_variance_and_grows_with_it() {
        let cfg = RegretConfig {
            rounds: 4000,
            seeds: 2,
            seed: 0,
        };
        let at = |c: &RegretCurve, t: u64| c.points.iter().find(|p| p.t == t).unwrap().median;
        let quiet =
            SeaConfig::from_spec(&mut Spec::parse("sea:sigma=0,Sigma=0,drift=zero,dim=5").unwrap())
                .unwrap();
        let r = regret(&quiet, &learners(&["oomd"]), &cfg).unwrap();
        let c = &r.curves[0];
        assert!(
            at(c, 4000) - at(c, 1000) < 1e-6 && at(c, 4000) > -1e-9,
            "{c:?}"
        );
        assert_eq!(c.points.last().unwrap().sigma2_sum, 0.0);
        let noisy =
            SeaConfig::from_spec(&mut Spec::parse("sea:sigma=1,Sigma=0,drift=zero,dim=5").unwrap())
                .unwrap();
        let r = regret(&noisy, &learners(&["oomd"]), &cfg).unwrap();
        let c = &r.curves[0];
        assert!(at(c, 4000) > 1.3 * at(c, 1000), "{c:?}");
    }

    /// On a constant sequence no decision beats the comparator, so every regret is >= 0 (up to rounding); with
    /// noise and drift every learner runs and stays finite (a drifting sequence can give negative regret).
    #[test]
    fn log_loss_learners_run_and_the_comparator_bounds_them() {
        let all = learners(&["ogd", "omd", "oomd", "ons", "ons:optimistic=true"]);
        let fixed = SeaConfig::from_spec(
            &mut Spec::parse("sea:loss=logloss,sigma=0,Sigma=0.4,drift=zero,dim=4").unwrap(),
        )
        .unwrap();
        let cfg = RegretConfig {
            rounds: 300,
            seeds: 1,
            seed: 1,
        };
        for c in regret(&fixed, &all, &cfg).unwrap().curves {
            for p in &c.points {
                assert!(p.median > -1e-9, "{}: {}", c.learner, p.median);
            }
        }
        let moving = SeaConfig::from_spec(
            &mut Spec::parse("sea:loss=logloss,sigma=0.2,Sigma=0.3,drift=periodic,period=20,dim=4")
                .unwrap(),
        )
        .unwrap();
        for c in regret(&moving, &all, &cfg).unwrap().curves {
            assert!(c.points.iter().all(|p| p.median.is_finite()), "{c:?}");
        }
    }

    #[test]
    fn sizes_are_checked_before_allocating() {
        let seq =
            SeaConfig::from_spec(&mut Spec::parse("sea:loss=logloss,dim=1000").unwrap()).unwrap();
        let cfg = RegretConfig {
            rounds: 1_000_000,
            seeds: 1,
            seed: 0,
        };
        let e = regret(&seq, &learners(&["omd"]), &cfg).unwrap_err();
        assert!(e.to_string().contains("stores"), "{e}");
        assert_eq!(
            RegretConfig {
                rounds: 1000,
                seeds: 1,
                seed: 0
            }
            .checkpoints()
            .last(),
            Some(&1000)
        );
    }
}
