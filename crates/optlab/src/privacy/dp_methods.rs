//! Private first-order methods on a finite sum held in shards by workers: DP-GD, DP-SGD, DIFF2 (P09, Murata &
//! Suzuki 2023) and private SpiderBoost (P21, Arora et al. 2023). All four are one loop over rounds; they differ
//! in which rounds are *anchors* and which are *differences*:
//!
//! - anchor round (every round of DP-GD and DP-SGD; every `period`-th round of DIFF2 and SpiderBoost): each
//!   worker sends Σᵢ clip_C₁(∇ℓᵢ(xᵣ)) over its examples (all of them, or a Poisson sample at rate q) plus noise;
//!   the estimator restarts at v = (sum over workers)/(q·n);
//! - difference round: each worker sends Σᵢ clip_ρ(∇ℓᵢ(xᵣ) − ∇ℓᵢ(xᵣ₋₁)) plus noise, with the radius
//!   ρ = C₂‖xᵣ − xᵣ₋₁‖ (smoothness bounds each difference by L‖xᵣ − xᵣ₋₁‖, so C₂ plays L and a small step
//!   costs little noise); v ← v + (sum)/(q·n). SpiderBoost caps ρ at 2C₁ (the paper's σ̂₂) and samples its
//!   differences at rate b/n; DIFF2 uses every example;
//! - then a gradient step x ← x − η(v + ∇r(x)), r the data-independent regularizer.
//!
//! DIFF2's output is the last iterate; SpiderBoost's is an iterate drawn uniformly from x₁..x_R (the paper's
//! rule), and both are reported.
//!
//! **Noise and trust.** Worker p adds N(0, σ²ρ²/P) to its message, so the sum over workers carries exactly the
//! Gaussian mechanism's N(0, σ²ρ²): the guarantee is for what the aggregate reveals (secure aggregation, or a
//! server that adds the noise, as the reference code of DIFF2 does); one worker's message alone has multiplier
//! σ/√P. With P = 1 this is central DP-GD/DP-SGD.
//!
//! **Accounting.** Neighbouring data sets differ by adding or removing one example (opacus's convention), so a
//! sum of terms clipped to ρ has sensitivity ρ and a round is the (sampled) Gaussian mechanism with multiplier
//! σ. The rounds compose in Rényi DP (tight for Gaussian mechanisms, additive over rounds of any mix of σ and q)
//! and convert to (ε, δ) as the accountant of [`super::rdp`]. Given a target ε, the multipliers are calibrated
//! together: anchors receive `anchor_share` of the Rényi budget (0.8 by default, the u = 1.25 split of the
//! DIFF2 implementation in CE-PLSGM; the authors published no code) and differences the rest.

use super::finite_sum::FiniteSum;
use super::rdp::{self, RdpAccountant};
use crate::distributed::Communicator;
use crate::rng::{rng_for, Stream};
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// Full-batch clipped gradients plus noise, every round.
    DpGd,
    /// Poisson-sampled clipped gradients plus noise, every round (Abadi et al. 2016).
    DpSgd,
    /// P09: a private full gradient every `period` rounds, private gradient differences in between.
    Diff2,
    /// P21: private SpiderBoost, full-gradient anchors every `period` rounds, Poisson-sampled differences.
    Spider,
}

impl Algo {
    pub const NAMES: &'static [&'static str] = &["dp-gd", "dp-sgd", "diff2", "spider"];
}

impl FromStr for Algo {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "dp-gd" => Algo::DpGd,
            "dp-sgd" => Algo::DpSgd,
            "diff2" => Algo::Diff2,
            "spider" => Algo::Spider,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown private method `{s}`; valid: {}",
                    Algo::NAMES.join(", ")
                )))
            }
        })
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algo::DpGd => "dp-gd",
            Algo::DpSgd => "dp-sgd",
            Algo::Diff2 => "diff2",
            Algo::Spider => "spider",
        })
    }
}

/// The privacy budget: a target ε (multipliers calibrated) or the noise multiplier σ of every round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DpBudget {
    Epsilon(f64),
    Noise(f64),
}

/// One run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DpConfig {
    pub algo: Algo,
    /// Rounds R (gradient steps).
    pub rounds: u64,
    /// Step size η.
    pub lr: f64,
    /// C₁: the clip radius of per-example gradients (∞: no clipping).
    pub clip: f64,
    /// C₂: the difference radius is C₂‖xᵣ − xᵣ₋₁‖ (∞: no clipping).
    pub diff_clip: f64,
    /// Rounds between anchors (DIFF2's T, SpiderBoost's q); ignored by DP-GD and DP-SGD.
    pub period: u64,
    /// Expected examples per sampled round over all workers (DP-SGD, SpiderBoost's differences).
    pub batch: usize,
    pub budget: DpBudget,
    pub delta: f64,
    /// The anchors' share of the Rényi budget when calibrating from ε, in (0, 1).
    pub anchor_share: f64,
    pub seed: u64,
    /// Rounds between evaluations of F and ‖∇F‖² (diagnostics on all data, not released privately).
    pub eval_every: u64,
}

impl DpConfig {
    /// Defaults for `algo`: 200 rounds, η = 0.5, C₁ = 1, C₂ = 1, period 10, batch 64, ε = 3, δ = 1e-5.
    pub fn new(algo: Algo) -> Self {
        Self {
            algo,
            rounds: 200,
            lr: 0.5,
            clip: 1.0,
            diff_clip: 1.0,
            period: 10,
            batch: 64,
            budget: DpBudget::Epsilon(3.0),
            delta: 1e-5,
            anchor_share: 0.8,
            seed: 0,
            eval_every: 10,
        }
    }

    /// Checks every value; one sentence names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: String| Err(Error::invalid(format!("dp: {what}, got {v}")));
        if self.rounds == 0 {
            return bad("rounds must be >= 1", "0".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr must be finite and > 0", self.lr.to_string());
        }
        if self.clip.is_nan() || self.clip <= 0.0 {
            return bad("clip must be > 0 (or inf)", self.clip.to_string());
        }
        if self.diff_clip.is_nan() || self.diff_clip <= 0.0 {
            return bad("diff-clip must be > 0 (or inf)", self.diff_clip.to_string());
        }
        if self.period == 0 {
            return bad("period must be >= 1", "0".into());
        }
        if self.batch == 0 {
            return bad("batch must be >= 1", "0".into());
        }
        match self.budget {
            DpBudget::Epsilon(e) if !(e.is_finite() && e > 0.0) => {
                return bad("epsilon must be finite and > 0", e.to_string())
            }
            DpBudget::Noise(s) if !(s.is_finite() && s >= 0.0) => {
                return bad("noise must be finite and >= 0", s.to_string())
            }
            _ => {}
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return bad("delta must lie in (0, 1)", self.delta.to_string());
        }
        if !(self.anchor_share > 0.0 && self.anchor_share < 1.0) {
            return bad(
                "anchor-share must lie in (0, 1)",
                self.anchor_share.to_string(),
            );
        }
        if self.eval_every == 0 {
            return bad("eval-every must be >= 1", "0".into());
        }
        let noisy = !matches!(self.budget, DpBudget::Noise(s) if s == 0.0);
        if noisy && !self.clip.is_finite() {
            return Err(Error::invalid(
                "dp: noise needs a finite clip (the noise scale is noise × clip); set --clip",
            ));
        }
        if noisy && !self.diff_clip.is_finite() && matches!(self.algo, Algo::Diff2) {
            return Err(Error::invalid(
                "dp: noise needs a finite diff-clip (the difference rounds' noise scale is noise × diff-clip × step); set --diff-clip",
            ));
        }
        Ok(())
    }

    fn is_anchor(&self, round: u64) -> bool {
        match self.algo {
            Algo::DpGd | Algo::DpSgd => true,
            Algo::Diff2 | Algo::Spider => round.is_multiple_of(self.period),
        }
    }

    /// Sampling rates (anchor, difference) over `n` examples.
    fn rates(&self, n: usize) -> (f64, f64) {
        let sampled = (self.batch as f64 / n as f64).min(1.0);
        match self.algo {
            Algo::DpGd | Algo::Diff2 => (1.0, 1.0),
            Algo::DpSgd => (sampled, sampled),
            Algo::Spider => (1.0, sampled),
        }
    }
}

/// The noise multipliers and round counts of a run over `n` examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub sigma_anchor: f64,
    pub sigma_difference: f64,
    pub q_anchor: f64,
    pub q_difference: f64,
    pub anchors: u64,
    pub differences: u64,
}

impl Calibration {
    /// The accountant after the whole run.
    pub fn accountant(&self) -> Result<RdpAccountant> {
        accountant(self.sigma_anchor, self.sigma_difference, self)
    }
}

fn accountant(sa: f64, sd: f64, c: &Calibration) -> Result<RdpAccountant> {
    let mut a = RdpAccountant::new();
    if c.anchors > 0 {
        a.compose(sa, c.q_anchor, c.anchors)?;
    }
    if c.differences > 0 {
        a.compose(sd, c.q_difference, c.differences)?;
    }
    Ok(a)
}

/// The multipliers for `cfg` over `n` examples: σ itself under [`DpBudget::Noise`], or calibrated so that the
/// whole run spends at most the target ε (to 0.01, opacus's tolerance).
pub fn calibrate(cfg: &DpConfig, n: usize) -> Result<Calibration> {
    cfg.validate()?;
    if n == 0 {
        return Err(Error::invalid("dp: the data set is empty"));
    }
    let anchors = (0..cfg.rounds).filter(|&r| cfg.is_anchor(r)).count() as u64;
    let (q_anchor, q_difference) = cfg.rates(n);
    let mut c = Calibration {
        sigma_anchor: 0.0,
        sigma_difference: 0.0,
        q_anchor,
        q_difference,
        anchors,
        differences: cfg.rounds - anchors,
    };
    let split = |k: f64| -> (f64, f64) {
        if c.differences == 0 || c.anchors == 0 {
            return (k, k);
        }
        let r = cfg.rounds as f64;
        (
            k * (c.anchors as f64 / (cfg.anchor_share * r)).sqrt(),
            k * (c.differences as f64 / ((1.0 - cfg.anchor_share) * r)).sqrt(),
        )
    };
    let (sa, sd) = match cfg.budget {
        DpBudget::Noise(s) => (s, s),
        DpBudget::Epsilon(e) => split(rdp::calibrate(e, cfg.delta, 0.01, |k| {
            let (sa, sd) = split(k);
            accountant(sa, sd, &c)
        })?),
    };
    c.sigma_anchor = sa;
    c.sigma_difference = sd;
    Ok(c)
}

/// One evaluation of the iterate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundRecord {
    /// Gradient steps taken.
    pub round: u64,
    /// F(x) = mean loss + r(x).
    pub loss: f64,
    /// ‖∇F(x)‖².
    pub grad_norm_sq: f64,
    /// ε spent so far (at the run's δ).
    pub epsilon: f64,
}

/// What a run returns (identical on every worker).
#[derive(Debug, Clone)]
pub struct DpOutcome {
    pub last: Vec<f64>,
    /// The method's output: the last iterate, or SpiderBoost's uniformly drawn one.
    pub output: Vec<f64>,
    pub output_round: u64,
    pub records: Vec<RoundRecord>,
    /// F and ‖∇F‖² at the output.
    pub output_record: RoundRecord,
    pub calibration: Calibration,
    pub epsilon: f64,
    /// Mean fraction of clipped terms over rounds.
    pub clipped_fraction: f64,
    /// Bytes this worker sent per round (messages only, evaluations excluded).
    pub bytes_per_round: f64,
}

/// Σ_rows clip_ρ(row) into a vector; returns the number of clipped rows. opacus's factor min(1, ρ/(‖g‖ + 1e-6));
/// ρ = ∞ adds the rows unchanged.
fn clipped_sum(rows: &[f64], d: usize, radius: f64, out: &mut [f64]) -> usize {
    let mut clipped = 0;
    for row in rows.chunks_exact(d) {
        let f = if radius.is_finite() {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            (radius / (norm + 1e-6)).min(1.0)
        } else {
            1.0
        };
        clipped += usize::from(f < 1.0);
        for (o, v) in out.iter_mut().zip(row) {
            *o += f * v;
        }
    }
    clipped
}

/// F(x) and ∇F(x) over every worker's examples (`n` in all).
fn evaluate(
    comm: &dyn Communicator,
    f: &dyn FiniteSum,
    x: &[f64],
    n: usize,
) -> Result<(f64, Vec<f64>)> {
    let d = f.dim();
    let mut acc = vec![0.0; d + 1];
    let all: Vec<usize> = (0..f.len()).collect();
    for chunk in all.chunks(512) {
        let (loss, rows) = f.example_gradients(x, chunk)?;
        acc[d] += loss;
        for row in rows.chunks_exact(d) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
    }
    comm.all_reduce_sum(&mut acc)?;
    let (r, gr) = f.regularizer(x);
    let grad: Vec<f64> = acc[..d]
        .iter()
        .zip(&gr)
        .map(|(g, r)| g / n as f64 + r)
        .collect();
    Ok((acc[d] / n as f64 + r, grad))
}

fn norm_sq(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum()
}

/// Runs `cfg` on this worker's examples `f` (the workers hold `n` examples in all) with the noise of `cal`
/// (from [`calibrate`] of the same `cfg` and `n`); every worker of `comm` calls this with its own shard and gets
/// the same outcome. `observe` sees each evaluation as it is made.
pub fn run(
    comm: &dyn Communicator,
    f: &dyn FiniteSum,
    n: usize,
    cfg: &DpConfig,
    cal: &Calibration,
    mut observe: impl FnMut(&RoundRecord),
) -> Result<DpOutcome> {
    use rand::Rng as _;
    let cal = *cal;
    let d = f.dim();
    // A round holds its examples' gradients at x, at the previous iterate and their differences.
    crate::memory::check(
        "the per-example gradients of one round",
        3.0 * f.len() as f64 * d as f64 * 8.0,
        "use more workers, fewer examples or a smaller model",
    )?;
    let p = comm.size() as f64;
    let rank = comm.rank() as u64;
    let mut x = f.initial_point()?;
    comm.broadcast(&mut x, 0)?;
    let mut x_prev = x.clone();
    let mut v = vec![0.0; d];
    let all: Vec<usize> = (0..f.len()).collect();
    // Rows at x_prev over all of this worker's examples, from the round before (full-batch rounds only).
    let mut cached: Option<Vec<f64>> = None;
    let output_round = match cfg.algo {
        Algo::Spider => rng_for(cfg.seed, Stream::Solver, 0).gen_range(1..=cfg.rounds),
        _ => cfg.rounds,
    };
    let mut output = None;
    let mut acc = RdpAccountant::new();
    let mut records = Vec::new();
    let mut clipped_total = 0.0;
    let sent_before = comm.bytes_sent();
    // Evaluations send too: their bytes are counted apart and left out of the messages' volume.
    let mut eval_bytes = 0;
    let mut record = |x: &[f64], round: u64, acc: &RdpAccountant| -> Result<RoundRecord> {
        let before = comm.bytes_sent();
        let (loss, grad) = evaluate(comm, f, x, n)?;
        eval_bytes += comm.bytes_sent() - before;
        Ok(RoundRecord {
            round,
            loss,
            grad_norm_sq: norm_sq(&grad),
            epsilon: acc.epsilon(cfg.delta)?.epsilon,
        })
    };
    let r0 = record(&x, 0, &acc)?;
    observe(&r0);
    records.push(r0);
    for round in 0..cfg.rounds {
        let anchor = cfg.is_anchor(round);
        let (q, sigma) = if anchor {
            (cal.q_anchor, cal.sigma_anchor)
        } else {
            (cal.q_difference, cal.sigma_difference)
        };
        let stream = (rank << 40) | round;
        let sampled: Vec<usize>;
        let idx: &[usize] = if q >= 1.0 {
            &all
        } else {
            let mut g = rng_for(cfg.seed, Stream::Privacy, stream);
            sampled = all.iter().copied().filter(|_| g.gen::<f64>() < q).collect();
            &sampled
        };
        let (_, now) = f.example_gradients(&x, idx)?;
        let mut msg = vec![0.0; d];
        let (radius, clipped) = if anchor {
            (cfg.clip, clipped_sum(&now, d, cfg.clip, &mut msg))
        } else {
            let prev = match (q >= 1.0, cached.take()) {
                (true, Some(rows)) => rows,
                _ => f.example_gradients(&x_prev, idx)?.1,
            };
            let step = norm_sq(
                &x.iter()
                    .zip(&x_prev)
                    .map(|(a, b)| a - b)
                    .collect::<Vec<_>>(),
            )
            .sqrt();
            let mut radius = if cfg.diff_clip.is_finite() {
                cfg.diff_clip * step
            } else {
                f64::INFINITY
            };
            if cfg.algo == Algo::Spider {
                radius = radius.min(2.0 * cfg.clip);
            }
            let diff: Vec<f64> = now.iter().zip(&prev).map(|(a, b)| a - b).collect();
            (radius, clipped_sum(&diff, d, radius, &mut msg))
        };
        clipped_total += clipped as f64 / idx.len().max(1) as f64;
        if sigma > 0.0 && radius > 0.0 {
            let mut g = rng_for(cfg.seed, Stream::PrivacyNoise, stream);
            let noise: Vec<f64> = super::dp_sgd::gaussian(d, sigma * radius / p.sqrt(), &mut g);
            for (m, z) in msg.iter_mut().zip(noise) {
                *m += z;
            }
        }
        comm.all_reduce_sum(&mut msg)?;
        let scale = 1.0 / (q * n as f64);
        if anchor {
            for (vi, m) in v.iter_mut().zip(&msg) {
                *vi = m * scale;
            }
        } else {
            for (vi, m) in v.iter_mut().zip(&msg) {
                *vi += m * scale;
            }
        }
        if v.iter().any(|a| !a.is_finite()) {
            return Err(Error::NonFinite(format!(
                "dp: the gradient estimate is not finite at round {round} (lower lr)"
            )));
        }
        acc.step(sigma, q)?;
        cached = (q >= 1.0).then_some(now);
        let (_, gr) = f.regularizer(&x);
        x_prev.clone_from(&x);
        for ((xi, vi), ri) in x.iter_mut().zip(&v).zip(&gr) {
            *xi -= cfg.lr * (vi + ri);
        }
        let done = round + 1;
        if done == output_round {
            output = Some(x.clone());
        }
        if done.is_multiple_of(cfg.eval_every) || done == cfg.rounds {
            let r = record(&x, done, &acc)?;
            observe(&r);
            records.push(r);
        }
    }
    let output = output.unwrap_or_else(|| x.clone());
    let output_record = if output_round == cfg.rounds {
        *records.last().expect("the final round is recorded")
    } else {
        record(&output, output_round, &acc)?
    };
    let epsilon = acc.epsilon(cfg.delta)?.epsilon;
    let sent = comm.bytes_sent() - sent_before - eval_bytes;
    Ok(DpOutcome {
        last: x,
        output,
        output_round,
        records,
        output_record,
        calibration: cal,
        epsilon,
        clipped_fraction: clipped_total / cfg.rounds as f64,
        bytes_per_round: sent as f64 / cfg.rounds as f64,
    })
}

/// Fewest examples a worker may hold.
pub const MIN_EXAMPLES_PER_WORKER: usize = 8;

/// Worker `rank`'s examples of `data` among `workers`: a seeded permutation cut into contiguous shards whose
/// sizes differ by at most one (see [`crate::distributed::shards`]).
pub fn shard(
    data: &crate::data::Dataset,
    workers: usize,
    rank: usize,
    seed: u64,
) -> Result<crate::data::Dataset> {
    let ranges = crate::distributed::shards(data.len(), workers, MIN_EXAMPLES_PER_WORKER)?;
    let range = ranges
        .get(rank)
        .cloned()
        .ok_or_else(|| Error::invalid(format!("worker {rank} is not one of {workers} workers")))?;
    let perm = crate::rng::permutation(data.len(), &mut rng_for(seed, Stream::Split, 0x5ad));
    let mut name = data.name.clone();
    if workers > 1 {
        name = format!("{name}[shard {rank}/{workers}]");
    }
    let mut s = data.subset(&perm[range]);
    s.name = name;
    Ok(s)
}

/// Runs `cfg` over `workers` in-process workers on `data`, each building its objective from its shard with
/// `objective`; returns the (common) outcome and the bytes each worker sent per round.
pub fn run_local(
    data: &crate::data::Dataset,
    workers: usize,
    cfg: &DpConfig,
    objective: impl Fn(crate::data::Dataset) -> Result<Box<dyn FiniteSum>> + Sync,
    observe: impl Fn(&RoundRecord) + Sync,
) -> Result<DpOutcome> {
    let n = data.len();
    let cal = calibrate(cfg, n)?;
    let mut outs = crate::distributed::local::run(
        workers,
        crate::distributed::local::DEFAULT_TIMEOUT,
        |comm| {
            let f = objective(shard(data, workers, comm.rank(), cfg.seed)?)?;
            run(comm, f.as_ref(), n, cfg, &cal, |r| {
                if comm.rank() == 0 {
                    observe(r)
                }
            })
        },
    )?;
    Ok(outs.swap_remove(0))
}
