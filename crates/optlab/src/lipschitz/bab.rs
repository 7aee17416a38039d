//! Branch and bound on the local Lipschitz bound (P02): a domain is one output class with some unstable hidden
//! ReLUs fixed to active (z ≥ 0) or inactive (z ≤ 0); its bound comes from the relaxation of [`super::local`] with
//! the split clamped into the forward pre-activation bounds (plain CROWN there: measured on 16-32-32-10 and
//! 16-64-64-10 nets, optimising the slopes in every domain cost 10x the time and bought no bound, the splits do). The worst domain over all classes is split first, on
//! the neuron with the largest 'area' score (−l|l| + u|u| of the linked ReLU-derivative term's ν interval, times
//! |A|, its coefficient in the bound). A child never reports more than its parent, so the global bound (the largest
//! over the open domains) never increases. Domains that the splits leave empty are dropped, and so are fully split
//! domains whose activation pattern no input of the box has (checked by the exact mode's LP). Stops at the time
//! budget, the domain cap, or when the worst domain is a pattern that the box meets: its bound is then the exact
//! gradient norm there, and the global bound is the exact local constant.

use super::chain::{no_splits, AffineMap, Splits};
use super::exact::region_meets_box;
use super::local::{domain_bounds, prepare, ClassBound, LocalOptions, SlopeOpt};
use super::network::Network;
use crate::Result;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Branching limits (P02's defaults: 60 s, 200 000 domains).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BabOptions {
    pub timeout: Duration,
    pub max_domains: usize,
    /// Domains split in parallel per round.
    pub batch: usize,
}

impl Default for BabOptions {
    fn default() -> Self {
        BabOptions {
            timeout: Duration::from_secs(60),
            max_domains: 200_000,
            batch: 16,
        }
    }
}

/// The bound after one phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub phase: String,
    pub bound: f64,
    pub seconds: f64,
    /// Domains evaluated so far (classes count as one each).
    pub domains: usize,
}

/// The local bound and how it was reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalResult {
    pub bound: f64,
    pub per_class: Vec<f64>,
    pub phases: Vec<Phase>,
    /// The global bound after every branching round: (seconds, bound).
    pub history: Vec<(f64, f64)>,
    /// Unstable hidden ReLUs on the whole box.
    pub unstable: usize,
    pub domains: usize,
    /// Whether branching ended on a fully split domain that the box meets: the bound is then the exact constant.
    pub exhausted: bool,
}

struct Domain {
    class: usize,
    splits: Splits,
    cb: ClassBound,
}

impl PartialEq for Domain {
    fn eq(&self, o: &Self) -> bool {
        self.cb.bound.total_cmp(&o.cb.bound).is_eq()
    }
}
impl Eq for Domain {}
impl PartialOrd for Domain {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Domain {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.cb.bound.total_cmp(&o.cb.bound)
    }
}

/// The neuron to split: the largest area score, the first unstable one when every score is 0.
fn pick(cb: &ClassBound) -> Option<(usize, usize)> {
    let score = |&(k, j): &(usize, usize)| {
        let (l, u) = (cb.nu_lo[k][j], cb.nu_hi[k][j]);
        let a = cb.coef.get(k).map_or(1.0, |c| c[j].abs());
        (-l * l.abs() + u * u.abs()).abs() * a
    };
    cb.unstable
        .iter()
        .copied()
        .fold(None, |best: Option<((usize, usize), f64)>, n| {
            let s = score(&n);
            match best {
                Some((_, bs)) if bs >= s => best,
                _ => Some((n, s)),
            }
        })
        .map(|(n, _)| n)
}

/// Whether some input of the box has the activation pattern `active` with a non-empty interior (the split neurons'
/// signs as constraints; the others are fixed by sound bounds on the domain), by the exact mode's LP.
fn pattern_meets_box(
    chain: &[AffineMap],
    x0: &[f64],
    eps: f64,
    splits: &Splits,
    active: &[Vec<bool>],
) -> Result<bool> {
    let n = x0.len();
    // The pre-activations as affine functions of x: rows of (a, c).
    let (mut a, mut c): (Vec<Vec<f64>>, Vec<f64>) = (
        (0..n)
            .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
            .collect(),
        vec![0.0; n],
    );
    let mut constraints = Vec::new();
    for (k, m) in chain[..chain.len() - 1].iter().enumerate() {
        let mut za = vec![vec![0.0; n]; m.out];
        let mut zc = m.b.clone();
        for r in 0..m.out {
            for (q, &w) in m.row(r).iter().enumerate() {
                if w != 0.0 {
                    zc[r] += w * c[q];
                    za[r].iter_mut().zip(&a[q]).for_each(|(d, s)| *d += w * s);
                }
            }
            let sign = f64::from(splits[k][r]);
            if sign != 0.0 {
                constraints.push((za[r].iter().map(|v| sign * v).collect(), sign * zc[r]));
            }
            if !active[k][r] {
                za[r].iter_mut().for_each(|v| *v = 0.0);
                zc[r] = 0.0;
            }
        }
        a = za;
        c = zc;
    }
    region_meets_box(&constraints, x0, eps)
}

/// The local bound over the l∞ box of `opts.eps` around `x0`: the relaxation on CROWN forward bounds, then on
/// α-CROWN ones (when `opts.slopes.steps` > 0), then branch and bound when `bab` is given.
pub fn local_lipschitz(
    net: &Network,
    x0: &[f64],
    opts: &LocalOptions,
    bab: Option<BabOptions>,
) -> Result<LocalResult> {
    let start = Instant::now();
    let chain = prepare(net, x0, opts.eps)?;
    let classes: Vec<usize> = (0..chain[chain.len() - 1].out).collect();
    let root = no_splits(&chain);
    let empty = || crate::Error::invalid("the box is empty");
    let mut phases = Vec::new();
    let chord = LocalOptions {
        slopes: SlopeOpt {
            steps: 0,
            ..opts.slopes
        },
        ..*opts
    };
    let first = domain_bounds(&chain, x0, &chord, &root, &classes).ok_or_else(empty)?;
    let max = |v: &[ClassBound]| v.iter().map(|c| c.bound).fold(0.0, f64::max);
    phases.push(Phase {
        phase: "relaxation (CROWN forward bounds)".into(),
        bound: max(&first),
        seconds: start.elapsed().as_secs_f64(),
        domains: classes.len(),
    });
    let unstable = first.first().map_or(0, |c| c.unstable.len());
    let mut init = first;
    if opts.slopes.steps > 0 {
        let opt = domain_bounds(&chain, x0, opts, &root, &classes).ok_or_else(empty)?;
        init = init
            .into_iter()
            .zip(opt)
            .map(|(a, b)| if b.bound <= a.bound { b } else { a })
            .collect();
        phases.push(Phase {
            phase: "optimised slopes (alpha-CROWN forward bounds)".into(),
            bound: max(&init),
            seconds: start.elapsed().as_secs_f64(),
            domains: 2 * classes.len(),
        });
    }
    let mut heap: BinaryHeap<Domain> = init
        .into_iter()
        .enumerate()
        .map(|(class, cb)| Domain {
            class,
            splits: root.clone(),
            cb,
        })
        .collect();
    let mut domains = phases.last().map_or(0, |p| p.domains);
    let mut history = Vec::new();
    let mut exhausted = false;
    if let Some(b) = bab {
        'rounds: while start.elapsed() < b.timeout && domains < b.max_domains {
            let mut batch = Vec::new();
            while batch.len() < b.batch.max(1) {
                let Some(d) = heap.pop() else { break };
                match pick(&d.cb) {
                    Some(n) => batch.push((d, n)),
                    None => {
                        // One activation pattern: exact if some input of the box has it, else dropped.
                        if !pattern_meets_box(&chain, x0, opts.eps, &d.splits, &d.cb.active)? {
                            domains += 1;
                            continue;
                        }
                        heap.push(d);
                        if batch.is_empty() {
                            exhausted = true;
                            break 'rounds;
                        }
                        break;
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            let children: Vec<Domain> = batch
                .par_iter()
                .flat_map_iter(|(d, (k, j))| {
                    [1i8, -1]
                        .into_iter()
                        .filter_map(|sign| {
                            let mut splits = d.splits.clone();
                            splits[*k][*j] = sign;
                            let mut cb = domain_bounds(&chain, x0, &chord, &splits, &[d.class])?
                                .pop()
                                .expect("one class");
                            cb.bound = cb.bound.min(d.cb.bound);
                            Some(Domain {
                                class: d.class,
                                splits,
                                cb,
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            domains += 2 * batch.len();
            heap.extend(children);
            let bound = heap.peek().map_or(0.0, |d| d.cb.bound);
            history.push((start.elapsed().as_secs_f64(), bound));
        }
        phases.push(Phase {
            phase: format!(
                "branch and bound ({})",
                if exhausted {
                    "worst domain fully split"
                } else if domains >= b.max_domains {
                    "domain cap"
                } else {
                    "time budget"
                }
            ),
            bound: heap.peek().map_or(0.0, |d| d.cb.bound),
            seconds: start.elapsed().as_secs_f64(),
            domains,
        });
    }
    let mut per_class = vec![0.0f64; classes.len()];
    for d in &heap {
        per_class[d.class] = per_class[d.class].max(d.cb.bound);
    }
    Ok(LocalResult {
        bound: per_class.iter().copied().fold(0.0, f64::max),
        per_class,
        phases,
        history,
        unstable,
        domains,
        exhausted,
    })
}
