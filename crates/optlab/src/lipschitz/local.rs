//! Local Lipschitz bounds by bound propagation through the Clarke-Jacobian backward graph (P02, Shi et al. 2022).
//!
//! For output c the gradient is g = A_0ᵀ y_0 with y_k = s_k ⊙ ν_k, ν_{k} = A_{k+1}ᵀ y_{k+1} and
//! ν_{L−2} = row c of A_{L−1}; s_k ∈ Clarke(ReLU'(z_k)) is 1 for neurons active on the whole box, 0 for inactive
//! ones and anything in [0, 1] for unstable ones. The constant over the l∞ box is max ‖g‖₁ (‖g‖₂ for the l2 input
//! norm, reported as the looser one). Each unstable product y = s ν lies in [min(ν, 0), max(ν, 0)]: it is bounded
//! above by the chord of relu(ν) and below by the chord of min(ν, 0) over the interval of ν, and |g_i| (g_i²) above
//! by its chord over the interval of g_i; intervals of ν and g come from the same back-substitution. The chords are
//! the optimal lines here, not a default: every term is a convex function bounded above (or a concave one below) and
//! the point the back-substitution evaluates each line at lies inside the interval, where any valid line is above
//! the chord. The optimisable slopes are therefore those of the forward pass (α-CROWN lower lines of the ReLUs,
//! [`super::chain`]), which decide which neurons are unstable. RecurJac mode replaces the lines of an unstable y
//! whose ν crosses 0 by the constant interval [l_ν, u_ν] (weaker, a special case).

pub use super::chain::SlopeOpt;
use super::chain::{affine_chain, no_splits, pre_bounds, AffineMap, PreBounds, Splits};
use super::naive::Norm;
use crate::{Error, Result};
use serde::Serialize;

/// The relaxation of the ReLU-derivative terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Relaxation {
    /// Linear lines over the interval of ν (P02's full relaxation).
    #[serde(rename = "linear")]
    Linear,
    /// Constant intervals for unstable terms (RecurJac).
    #[serde(rename = "recurjac")]
    RecurJac,
}

/// The state of a ReLU on the box (after splits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mask {
    Active,
    Inactive,
    Unstable,
}

/// Per-class bound of one domain, with what branch and bound needs.
#[derive(Debug, Clone)]
pub(crate) struct ClassBound {
    pub bound: f64,
    /// Coefficient of every y_{k,j} in the final bound (the 'area' heuristic's |A|).
    pub coef: Vec<Vec<f64>>,
    pub nu_lo: Vec<Vec<f64>>,
    pub nu_hi: Vec<Vec<f64>>,
    /// The unstable forward neurons (layer, index): the branching candidates.
    pub unstable: Vec<(usize, usize)>,
    /// Which hidden ReLUs are active (the activation pattern once nothing is unstable).
    pub active: Vec<Vec<bool>>,
}

/// The backward graph of one output over one domain.
pub(crate) struct Backward<'a> {
    chain: &'a [AffineMap],
    mask: Vec<Vec<Mask>>,
    nu_lo: Vec<Vec<f64>>,
    nu_hi: Vec<Vec<f64>>,
    /// ν of the last hidden layer (a constant: row c of the last map).
    top: Vec<f64>,
    g_lo: Vec<f64>,
    g_hi: Vec<f64>,
    relax: Relaxation,
    norm: Norm,
}

/// Slope and intercept of the chord of relu(ν) over [l, u] (exact when ν keeps one sign).
fn chord_up(l: f64, u: f64) -> (f64, f64) {
    if l >= 0.0 {
        (1.0, 0.0)
    } else if u <= 0.0 {
        (0.0, 0.0)
    } else {
        let a = u / (u - l);
        (a, -a * l)
    }
}

/// Slope and intercept of the chord of min(ν, 0) over [l, u].
fn chord_down(l: f64, u: f64) -> (f64, f64) {
    if u <= 0.0 {
        (1.0, 0.0)
    } else if l >= 0.0 {
        (0.0, 0.0)
    } else {
        let a = -l / (u - l);
        (a, -a * u)
    }
}

/// Slope and intercept of the chord of |g| (l1) or g² (l2) over [l, u].
fn chord_norm(norm: Norm, l: f64, u: f64) -> (f64, f64) {
    match norm {
        Norm::Inf if u > l => {
            let a = (u.abs() - l.abs()) / (u - l);
            (a, l.abs() - a * l)
        }
        Norm::Inf => (u.signum() * f64::from(u8::from(u != 0.0)), 0.0),
        Norm::Two => (l + u, -l * u),
    }
}

impl<'a> Backward<'a> {
    /// Builds the graph of output `class` and the intervals of every ν and of g.
    pub(crate) fn new(
        chain: &'a [AffineMap],
        pre: &PreBounds,
        splits: &Splits,
        class: usize,
        relax: Relaxation,
        norm: Norm,
    ) -> Self {
        let hidden = chain.len() - 1;
        let mask: Vec<Vec<Mask>> = (0..hidden)
            .map(|k| {
                (0..chain[k].out)
                    .map(|j| match splits[k][j] {
                        1 => Mask::Active,
                        -1 => Mask::Inactive,
                        _ if pre.lo[k][j] > 0.0 => Mask::Active,
                        _ if pre.hi[k][j] < 0.0 => Mask::Inactive,
                        _ => Mask::Unstable,
                    })
                    .collect()
            })
            .collect();
        let last = &chain[hidden];
        let top = last.row(class).to_vec();
        let mut b = Backward {
            chain,
            mask,
            nu_lo: vec![Vec::new(); hidden],
            nu_hi: vec![Vec::new(); hidden],
            top: top.clone(),
            g_lo: Vec::new(),
            g_hi: Vec::new(),
            relax,
            norm,
        };
        if hidden == 0 {
            b.g_lo = top.clone();
            b.g_hi = top;
            return b;
        }
        b.nu_lo[hidden - 1] = top.clone();
        b.nu_hi[hidden - 1] = top;
        // ν_k = A_{k+1}ᵀ y_{k+1}: coefficient of y_{k+1,i} in ν_{k,j} is A_{k+1}[i][j].
        for k in (0..hidden - 1).rev() {
            let (lo, hi) = b.interval(&chain[k + 1], k + 1);
            b.nu_lo[k] = lo;
            b.nu_hi[k] = hi;
        }
        let (lo, hi) = b.interval(&chain[0], 0);
        b.g_lo = lo;
        b.g_hi = hi;
        b
    }

    /// Bounds of Aᵀ y_k (one row per input of `a`) with the chord lines.
    fn interval(&self, a: &AffineMap, k: usize) -> (Vec<f64>, Vec<f64>) {
        let rows = a.inp;
        let mut m = vec![0.0; rows * a.out];
        for i in 0..a.out {
            for j in 0..rows {
                m[j * a.out + i] = a.w[i * rows + j];
            }
        }
        let hi = self.upper_rows(m.clone(), rows, k, None);
        let neg: Vec<f64> = m.iter().map(|v| -v).collect();
        let lo = self
            .upper_rows(neg, rows, k, None)
            .iter()
            .map(|v| -v)
            .collect();
        (lo, hi)
    }

    /// The coefficient on ν and the bias of c·y for neuron (k, j) in an upper bound.
    fn relax_term(&self, k: usize, j: usize, c: f64) -> (f64, f64) {
        match self.mask[k][j] {
            Mask::Active => (c, 0.0),
            Mask::Inactive => (0.0, 0.0),
            Mask::Unstable => {
                let (l, u) = (self.nu_lo[k][j], self.nu_hi[k][j]);
                if self.relax == Relaxation::RecurJac && l < 0.0 && u > 0.0 {
                    return (0.0, if c >= 0.0 { c * u } else { c * l });
                }
                let (a, b) = if c >= 0.0 {
                    chord_up(l, u)
                } else {
                    chord_down(l, u)
                };
                (c * a, c * b)
            }
        }
    }

    /// Upper bounds of `rows` linear functions with coefficients `m` on y_k, by back-substitution with chord lines.
    /// With `record`, the coefficients on every y_k are kept (one row).
    fn upper_rows(
        &self,
        mut m: Vec<f64>,
        rows: usize,
        from: usize,
        mut record: Option<&mut Vec<Vec<f64>>>,
    ) -> Vec<f64> {
        let hidden = self.chain.len() - 1;
        let mut bias = vec![0.0; rows];
        for k in from..hidden {
            let width = self.chain[k].out;
            if let Some(rec) = record.as_deref_mut() {
                rec.push(m.clone());
            }
            for r in 0..rows {
                for j in 0..width {
                    let (c, b) = self.relax_term(k, j, m[r * width + j]);
                    m[r * width + j] = c;
                    bias[r] += b;
                }
            }
            if k == hidden - 1 {
                for r in 0..rows {
                    bias[r] += m[r * width..(r + 1) * width]
                        .iter()
                        .zip(&self.top)
                        .map(|(a, b)| a * b)
                        .sum::<f64>();
                }
            } else {
                // ν_k = A_{k+1}ᵀ y_{k+1}: coefficients on y_{k+1} are A_{k+1} (coefficients on ν_k).
                let a = &self.chain[k + 1];
                let mut next = vec![0.0; rows * a.out];
                for r in 0..rows {
                    let mr = &m[r * width..(r + 1) * width];
                    for i in 0..a.out {
                        next[r * a.out + i] = a.row(i).iter().zip(mr).map(|(x, y)| x * y).sum();
                    }
                }
                m = next;
            }
        }
        bias
    }

    /// The bound of output c's gradient norm on this domain, with the coefficient of every y_{k,j}.
    pub(crate) fn bound(&self) -> ClassBound {
        let n = self.g_lo.len();
        let (mut t, mut bias) = (vec![0.0; n], 0.0);
        for (i, ti) in t.iter_mut().enumerate() {
            let (a, b) = chord_norm(self.norm, self.g_lo[i], self.g_hi[i]);
            *ti = a;
            bias += b;
        }
        let mut coef = Vec::new();
        let line = if self.chain.len() == 1 {
            bias + t.iter().zip(&self.top).map(|(a, b)| a * b).sum::<f64>()
        } else {
            // Coefficients on y_0 are A_0 t.
            let a0 = &self.chain[0];
            let m = (0..a0.out)
                .map(|j| a0.row(j).iter().zip(&t).map(|(w, v)| w * v).sum())
                .collect();
            bias + self.upper_rows(m, 1, 0, Some(&mut coef))[0]
        };
        // The interval bound from the intervals of g (sound; the line bound is usually tighter).
        let interval: f64 = self
            .g_lo
            .iter()
            .zip(&self.g_hi)
            .map(|(l, u)| {
                let m = l.abs().max(u.abs());
                match self.norm {
                    Norm::Inf => m,
                    Norm::Two => m * m,
                }
            })
            .sum();
        let best = line.min(interval).max(0.0);
        let bound = match self.norm {
            Norm::Inf => best,
            Norm::Two => best.sqrt(),
        };
        ClassBound {
            // Guard against rounding in the back-substitution.
            bound: bound * (1.0 + 1e-12),
            coef,
            nu_lo: self.nu_lo.clone(),
            nu_hi: self.nu_hi.clone(),
            unstable: self
                .mask
                .iter()
                .enumerate()
                .flat_map(|(k, m)| {
                    m.iter()
                        .enumerate()
                        .filter(|(_, s)| **s == Mask::Unstable)
                        .map(move |(j, _)| (k, j))
                })
                .collect(),
            active: self
                .mask
                .iter()
                .map(|m| m.iter().map(|s| *s == Mask::Active).collect())
                .collect(),
        }
    }
}

/// Options of the local bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalOptions {
    pub eps: f64,
    pub norm: Norm,
    pub relax: Relaxation,
    pub slopes: SlopeOpt,
}

impl LocalOptions {
    /// The paper's defaults: l∞ input norm, linear relaxation, optimised slopes.
    pub fn new(eps: f64) -> Self {
        LocalOptions {
            eps,
            norm: Norm::Inf,
            relax: Relaxation::Linear,
            slopes: SlopeOpt::default(),
        }
    }
}

/// Checks the centre and radius and builds the chain.
pub(crate) fn prepare(
    net: &super::network::Network,
    x0: &[f64],
    eps: f64,
) -> Result<Vec<AffineMap>> {
    super::exact::check_box(net, x0, eps)?;
    affine_chain(net)
}

/// Per-class bounds of one domain (`splits`); `None` when the splits leave no input in the box.
pub(crate) fn domain_bounds(
    chain: &[AffineMap],
    x0: &[f64],
    opts: &LocalOptions,
    splits: &Splits,
    classes: &[usize],
) -> Option<Vec<ClassBound>> {
    let pre = pre_bounds(chain, x0, opts.eps, splits, opts.slopes)?;
    Some(
        classes
            .iter()
            .map(|&c| Backward::new(chain, &pre, splits, c, opts.relax, opts.norm).bound())
            .collect(),
    )
}

/// The local bound of every output over the box, without branching: per class sup ‖∇f_c‖ (l1 for the l∞ input
/// norm, l2 for l2).
pub fn local_bound(
    net: &super::network::Network,
    x0: &[f64],
    opts: &LocalOptions,
) -> Result<Vec<f64>> {
    let chain = prepare(net, x0, opts.eps)?;
    let classes: Vec<usize> = (0..chain[chain.len() - 1].out).collect();
    let splits = no_splits(&chain);
    let b = domain_bounds(&chain, x0, opts, &splits, &classes)
        .ok_or_else(|| Error::invalid("the box is empty"))?;
    Ok(b.into_iter().map(|c| c.bound).collect())
}
