//! A ReLU network as a chain of dense affine maps A_0, ReLU, A_1, ReLU, …, A_{L−1} (convolutions densified,
//! consecutive affine maps composed, Flatten dropped), and sound pre-activation bounds over an l∞ box by linear
//! bound propagation (CROWN: chord above, adaptive slope 0/1 below each unstable ReLU), intersected with interval
//! bounds, then tightened by optimising the lower slopes (α-CROWN: projected Adam on the sum of the widths of the
//! unstable neurons' intervals, every iterate sound, the best bound of each neuron kept). They decide which ReLUs
//! are unstable in the local Lipschitz bounds of P02.

use super::network::{conv2d, Layer, Network};
use crate::{Error, Result};

/// y = W x + b, W row-major [out, inp].
#[derive(Debug, Clone, PartialEq)]
pub struct AffineMap {
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    pub out: usize,
    pub inp: usize,
}

impl AffineMap {
    fn identity(n: usize) -> Self {
        let mut w = vec![0.0; n * n];
        (0..n).for_each(|i| w[i * n + i] = 1.0);
        AffineMap {
            w,
            b: vec![0.0; n],
            out: n,
            inp: n,
        }
    }

    /// Row r of W.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.w[r * self.inp..(r + 1) * self.inp]
    }

    /// `next` after `self`.
    fn then(&self, next: &AffineMap) -> AffineMap {
        let mut w = vec![0.0; next.out * self.inp];
        let mut b = next.b.clone();
        for r in 0..next.out {
            for k in 0..next.inp {
                let c = next.w[r * next.inp + k];
                if c != 0.0 {
                    b[r] += c * self.b[k];
                    let dst = &mut w[r * self.inp..(r + 1) * self.inp];
                    dst.iter_mut()
                        .zip(self.row(k))
                        .for_each(|(d, s)| *d += c * s);
                }
            }
        }
        AffineMap {
            w,
            b,
            out: next.out,
            inp: self.inp,
        }
    }
}

/// A dense affine map of one Linear or Conv2d layer (a convolution's matrix is built column by column).
pub(crate) fn dense(layer: &Layer, inp: usize) -> AffineMap {
    match layer {
        Layer::Linear { w, b, out, inp } => AffineMap {
            w: w.clone(),
            b: b.clone(),
            out: *out,
            inp: *inp,
        },
        Layer::Conv2d { b, .. } => {
            let [co, ho, wo] = layer.conv_output().expect("conv");
            let out = co * ho * wo;
            let mut w = vec![0.0; out * inp];
            let mut e = vec![0.0; inp];
            for col in 0..inp {
                e[col] = 1.0;
                for (r, v) in conv2d(layer, &e, false).into_iter().enumerate() {
                    w[r * inp + col] = v;
                }
                e[col] = 0.0;
            }
            let bias = (0..out).map(|r| b[r / (ho * wo)]).collect();
            AffineMap {
                w,
                b: bias,
                out,
                inp,
            }
        }
        _ => unreachable!("dense() is called on weighted layers"),
    }
}

/// The affine maps of `net` between its ReLUs. Refuses MaxMin (the bound propagation here is for ReLU networks).
pub fn affine_chain(net: &Network) -> Result<Vec<AffineMap>> {
    let mut chain = Vec::new();
    let mut size = net.input_dim();
    let mut cur = AffineMap::identity(size);
    for l in &net.layers {
        match l {
            Layer::Linear { .. } | Layer::Conv2d { .. } => {
                let d = dense(l, size);
                size = d.out;
                cur = cur.then(&d);
            }
            Layer::Flatten => {}
            Layer::Relu => {
                chain.push(std::mem::replace(&mut cur, AffineMap::identity(size)));
            }
            Layer::MaxMin => {
                return Err(Error::invalid(
                    "the local bound propagates through Linear, Conv2d, ReLU and Flatten layers; MaxMin is not \
                     supported (use --method naive or lipsdp)",
                ))
            }
        }
    }
    chain.push(cur);
    Ok(chain)
}

/// Pre-activation bounds of the hidden layers (the inputs of every ReLU) over a box.
#[derive(Debug, Clone, PartialEq)]
pub struct PreBounds {
    pub lo: Vec<Vec<f64>>,
    pub hi: Vec<Vec<f64>>,
}

/// Branching decisions on hidden neurons: +1 forces z ≥ 0, −1 forces z ≤ 0, 0 leaves it free.
pub type Splits = Vec<Vec<i8>>;

/// No decisions for `chain`.
pub fn no_splits(chain: &[AffineMap]) -> Splits {
    chain[..chain.len() - 1]
        .iter()
        .map(|a| vec![0; a.out])
        .collect()
}

/// Slope optimisation settings of the forward bounds (α-CROWN's defaults: 20 steps, lr 0.5, decay 0.98).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlopeOpt {
    pub steps: usize,
    pub lr: f64,
    pub decay: f64,
}

impl Default for SlopeOpt {
    fn default() -> Self {
        SlopeOpt {
            steps: 20,
            lr: 0.5,
            decay: 0.98,
        }
    }
}

fn unstable(l: f64, u: f64) -> bool {
    l < 0.0 && u > 0.0
}

/// The adaptive lower slope of relu on [l, u]: 1 when u > −l, else 0.
fn adaptive(l: f64, u: f64) -> f64 {
    if u > -l {
        1.0
    } else {
        0.0
    }
}

/// The adaptive lower slopes of the ReLUs of layers 0..k.
fn adaptive_slopes(pre: &PreBounds, k: usize) -> Vec<Vec<f64>> {
    (0..k)
        .map(|p| {
            pre.lo[p]
                .iter()
                .zip(&pre.hi[p])
                .map(|(l, u)| adaptive(*l, *u))
                .collect()
        })
        .collect()
}

/// The slope and intercept of a linear bound of relu(z) for z in [l, u]: above (`upper`) the chord, below the line
/// of slope `alpha` ∈ [0, 1] through 0.
fn relu_line(l: f64, u: f64, upper: bool, alpha: f64) -> (f64, f64) {
    if l >= 0.0 {
        (1.0, 0.0)
    } else if u <= 0.0 {
        (0.0, 0.0)
    } else if upper {
        let s = u / (u - l);
        (s, -s * l)
    } else {
        (alpha, 0.0)
    }
}

/// Upper bounds of the rows of `m` (coefficients on the output of ReLU `k`, `rows` of them) plus `bias` over the box,
/// by back-substitution through the ReLUs and maps below, with lower slopes `alpha` (per ReLU layer ≤ k). With
/// `grad`, adds the derivative of the sum of the row bounds in every slope: the coefficient times the value of the
/// neuron's input on the relaxed chain at the maximising corner of the box.
#[allow(clippy::too_many_arguments)]
fn upper_from_relu(
    chain: &[AffineMap],
    pre: &PreBounds,
    mut m: Vec<f64>,
    mut bias: Vec<f64>,
    rows: usize,
    k: usize,
    x0: &[f64],
    eps: f64,
    alpha: &[Vec<f64>],
    grad: Option<&mut Vec<Vec<f64>>>,
) -> Vec<f64> {
    // Coefficients on the output of every ReLU (only kept for the gradient), from layer k down to 0.
    let mut coefs: Vec<Vec<f64>> = Vec::new();
    for i in (0..=k).rev() {
        let width = chain[i].out;
        if grad.is_some() {
            coefs.push(m.clone());
        }
        for r in 0..rows {
            for j in 0..width {
                let c = m[r * width + j];
                let (s, t) = relu_line(pre.lo[i][j], pre.hi[i][j], c >= 0.0, alpha[i][j]);
                m[r * width + j] = c * s;
                bias[r] += c * t;
            }
        }
        // Through A_i: coefficients on its input.
        let a = &chain[i];
        let mut next = vec![0.0; rows * a.inp];
        for r in 0..rows {
            let mr = &m[r * width..(r + 1) * width];
            bias[r] += mr.iter().zip(&a.b).map(|(x, y)| x * y).sum::<f64>();
            let dst = &mut next[r * a.inp..(r + 1) * a.inp];
            for (j, &c) in mr.iter().enumerate() {
                if c != 0.0 {
                    dst.iter_mut().zip(a.row(j)).for_each(|(d, w)| *d += c * w);
                }
            }
        }
        m = next;
    }
    let n = x0.len();
    if let Some(g) = grad {
        coefs.reverse();
        for r in 0..rows {
            // The maximising corner, then the relaxed chain forward.
            let mut h: Vec<f64> = (0..n)
                .map(|q| {
                    x0[q] + eps * m[r * n + q].signum() * f64::from(u8::from(m[r * n + q] != 0.0))
                })
                .collect();
            for i in 0..=k {
                let a = &chain[i];
                let width = a.out;
                let z: Vec<f64> = (0..width)
                    .map(|j| a.b[j] + a.row(j).iter().zip(&h).map(|(w, v)| w * v).sum::<f64>())
                    .collect();
                h = (0..width)
                    .map(|j| {
                        let c = coefs[i][r * width + j];
                        let (l, u) = (pre.lo[i][j], pre.hi[i][j]);
                        if c < 0.0 && unstable(l, u) {
                            g[i][j] += c * z[j];
                        }
                        let (s, t) = relu_line(l, u, c >= 0.0, alpha[i][j]);
                        s * z[j] + t
                    })
                    .collect();
            }
        }
    }
    (0..rows)
        .map(|r| {
            let mr = &m[r * n..(r + 1) * n];
            bias[r]
                + mr.iter().zip(x0).map(|(a, b)| a * b).sum::<f64>()
                + eps * mr.iter().map(|a| a.abs()).sum::<f64>()
        })
        .collect()
}

/// Projected Adam over slopes in [0, 1] (minimising).
struct Adam {
    m1: Vec<Vec<f64>>,
    m2: Vec<Vec<f64>>,
    step: i32,
}

impl Adam {
    fn new(shape: &[Vec<f64>]) -> Self {
        let z: Vec<Vec<f64>> = shape.iter().map(|v| vec![0.0; v.len()]).collect();
        Adam {
            m1: z.clone(),
            m2: z,
            step: 0,
        }
    }

    fn update(&mut self, x: &mut [Vec<f64>], g: &[Vec<f64>], lr: f64) {
        let (b1, b2) = (0.9f64, 0.999f64);
        self.step += 1;
        let (c1, c2) = (1.0 - b1.powi(self.step), 1.0 - b2.powi(self.step));
        for (p, xs) in x.iter_mut().enumerate() {
            for (j, xv) in xs.iter_mut().enumerate() {
                let gr = g[p][j];
                self.m1[p][j] = b1 * self.m1[p][j] + (1.0 - b1) * gr;
                self.m2[p][j] = b2 * self.m2[p][j] + (1.0 - b2) * gr * gr;
                let d = lr * (self.m1[p][j] / c1) / ((self.m2[p][j] / c2).sqrt() + 1e-8);
                *xv = (*xv - d).clamp(0.0, 1.0);
            }
        }
    }
}

/// Tightens the bounds of the unstable neurons of layer k (≥ 1) by optimising the lower slopes of the ReLUs below,
/// one slope set for the upper bounds and one for the lower bounds (shared by the neurons of layer k).
#[allow(clippy::too_many_arguments)]
fn optimise_layer(
    chain: &[AffineMap],
    pre: &PreBounds,
    k: usize,
    x0: &[f64],
    eps: f64,
    opt: SlopeOpt,
    lo: &mut [f64],
    hi: &mut [f64],
) {
    let rows: Vec<usize> = (0..lo.len()).filter(|&j| unstable(lo[j], hi[j])).collect();
    if rows.is_empty() || opt.steps == 0 {
        return;
    }
    let a = &chain[k];
    let (w, b): (Vec<f64>, Vec<f64>) = (
        rows.iter()
            .flat_map(|&j| a.row(j).iter().copied())
            .collect(),
        rows.iter().map(|&j| a.b[j]).collect(),
    );
    let init = adaptive_slopes(pre, k);
    for sign in [1.0, -1.0] {
        let mut alpha = init.clone();
        let mut adam = Adam::new(&alpha);
        let mut lr = opt.lr;
        let ws: Vec<f64> = w.iter().map(|v| sign * v).collect();
        let bs: Vec<f64> = b.iter().map(|v| sign * v).collect();
        for _ in 0..opt.steps {
            let mut g: Vec<Vec<f64>> = init.iter().map(|v| vec![0.0; v.len()]).collect();
            let up = upper_from_relu(
                chain,
                pre,
                ws.clone(),
                bs.clone(),
                rows.len(),
                k - 1,
                x0,
                eps,
                &alpha,
                Some(&mut g),
            );
            for (q, &j) in rows.iter().enumerate() {
                if sign > 0.0 {
                    hi[j] = hi[j].min(up[q]);
                } else {
                    lo[j] = lo[j].max(-up[q]);
                }
            }
            adam.update(&mut alpha, &g, lr);
            lr *= opt.decay;
        }
    }
}

/// Sound bounds of every hidden pre-activation over {x : ‖x − x0‖∞ ≤ ε} intersected with the `splits`; `None`
/// when the splits make the domain empty.
pub fn pre_bounds(
    chain: &[AffineMap],
    x0: &[f64],
    eps: f64,
    splits: &Splits,
    opt: SlopeOpt,
) -> Option<PreBounds> {
    let hidden = chain.len() - 1;
    let mut pre = PreBounds {
        lo: Vec::with_capacity(hidden),
        hi: Vec::with_capacity(hidden),
    };
    for k in 0..hidden {
        let a = &chain[k];
        let (mut lo, mut hi): (Vec<f64>, Vec<f64>) = if k == 0 {
            (0..a.out)
                .map(|r| {
                    let row = a.row(r);
                    let mid = a.b[r] + row.iter().zip(x0).map(|(w, x)| w * x).sum::<f64>();
                    let rad = eps * row.iter().map(|w| w.abs()).sum::<f64>();
                    (mid - rad, mid + rad)
                })
                .unzip()
        } else {
            let (plo, phi) = (&pre.lo[k - 1], &pre.hi[k - 1]);
            // Interval bounds through ReLU and A_k.
            let (mut ilo, mut ihi) = (a.b.clone(), a.b.clone());
            for r in 0..a.out {
                for (j, &w) in a.row(r).iter().enumerate() {
                    let (rl, rh) = (plo[j].max(0.0), phi[j].max(0.0));
                    if w >= 0.0 {
                        ilo[r] += w * rl;
                        ihi[r] += w * rh;
                    } else {
                        ilo[r] += w * rh;
                        ihi[r] += w * rl;
                    }
                }
            }
            let alpha = adaptive_slopes(&pre, k);
            let up = upper_from_relu(
                chain,
                &pre,
                a.w.clone(),
                a.b.clone(),
                a.out,
                k - 1,
                x0,
                eps,
                &alpha,
                None,
            );
            let neg: Vec<f64> = a.w.iter().map(|v| -v).collect();
            let nb: Vec<f64> = a.b.iter().map(|v| -v).collect();
            let down = upper_from_relu(chain, &pre, neg, nb, a.out, k - 1, x0, eps, &alpha, None);
            let mut lo: Vec<f64> = ilo.iter().zip(&down).map(|(i, d)| i.max(-d)).collect();
            let mut hi: Vec<f64> = ihi.iter().zip(&up).map(|(i, u)| i.min(*u)).collect();
            optimise_layer(chain, &pre, k, x0, eps, opt, &mut lo, &mut hi);
            (lo, hi)
        };
        for j in 0..a.out {
            match splits[k][j] {
                1 => lo[j] = lo[j].max(0.0),
                -1 => hi[j] = hi[j].min(0.0),
                _ => {}
            }
            if lo[j] > hi[j] {
                let scale = 1.0 + lo[j].abs() + hi[j].abs();
                if lo[j] - hi[j] > 1e-9 * scale {
                    return None;
                }
                // Rounding only: keep the point.
                let m = 0.5 * (lo[j] + hi[j]);
                lo[j] = m;
                hi[j] = m;
            }
        }
        pre.lo.push(lo);
        pre.hi.push(hi);
    }
    Some(pre)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lipschitz::network::{Layer, Network};

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn net(sizes: &[usize], seed: &mut u64) -> Network {
        let mut layers = Vec::new();
        for w in sizes.windows(2) {
            layers.push(Layer::Linear {
                w: (0..w[0] * w[1]).map(|_| lcg(seed)).collect(),
                b: (0..w[1]).map(|_| 0.3 * lcg(seed)).collect(),
                out: w[1],
                inp: w[0],
            });
            layers.push(Layer::Relu);
        }
        layers.pop();
        Network {
            layers,
            input_shape: vec![sizes[0]],
        }
    }

    /// The slope gradient of the back-substituted bound matches central differences (random slopes sit away from
    /// the kinks of this piecewise-linear function).
    #[test]
    fn slope_gradient_matches_finite_differences() {
        let mut seed = 7u64;
        let n = net(&[5, 8, 8, 6], &mut seed);
        let chain = affine_chain(&n).unwrap();
        let x0: Vec<f64> = (0..5).map(|_| lcg(&mut seed)).collect();
        let no = SlopeOpt {
            steps: 0,
            ..SlopeOpt::default()
        };
        let pre = pre_bounds(&chain, &x0, 0.5, &no_splits(&chain), no).unwrap();
        let alpha: Vec<Vec<f64>> = (0..2)
            .map(|_| (0..8).map(|_| 0.5 + 0.45 * lcg(&mut seed)).collect())
            .collect();
        let a = &chain[2];
        let eval = |al: &[Vec<f64>], g: Option<&mut Vec<Vec<f64>>>| {
            upper_from_relu(
                &chain,
                &pre,
                a.w.clone(),
                a.b.clone(),
                a.out,
                1,
                &x0,
                0.5,
                al,
                g,
            )
            .iter()
            .sum::<f64>()
        };
        let mut g = vec![vec![0.0; 8]; 2];
        eval(&alpha, Some(&mut g));
        let (h, mut nonzero) = (1e-7, 0);
        for p in 0..2 {
            for j in 0..8 {
                let (mut up, mut dn) = (alpha.clone(), alpha.clone());
                up[p][j] += h;
                dn[p][j] -= h;
                let fd = (eval(&up, None) - eval(&dn, None)) / (2.0 * h);
                assert!(
                    (fd - g[p][j]).abs() <= 1e-5 * (1.0 + fd.abs()),
                    "{p} {j}: {fd} vs {}",
                    g[p][j]
                );
                nonzero += usize::from(g[p][j] != 0.0);
            }
        }
        assert!(nonzero >= 3, "only {nonzero} slopes matter");
    }

    /// Optimised slopes never loosen the bounds, and the bounds contain sampled pre-activations.
    #[test]
    fn optimised_bounds_are_tighter_and_contain_samples() {
        let mut seed = 11u64;
        let n = net(&[6, 16, 16, 16, 4], &mut seed);
        let chain = affine_chain(&n).unwrap();
        let x0: Vec<f64> = (0..6).map(|_| lcg(&mut seed)).collect();
        let eps = 0.3;
        let plain = SlopeOpt {
            steps: 0,
            ..SlopeOpt::default()
        };
        let a = pre_bounds(&chain, &x0, eps, &no_splits(&chain), plain).unwrap();
        let b = pre_bounds(&chain, &x0, eps, &no_splits(&chain), SlopeOpt::default()).unwrap();
        let (mut wa, mut wb) = (0.0, 0.0);
        for k in 0..3 {
            for j in 0..16 {
                assert!(b.lo[k][j] >= a.lo[k][j] && b.hi[k][j] <= a.hi[k][j]);
                wa += a.hi[k][j] - a.lo[k][j];
                wb += b.hi[k][j] - b.lo[k][j];
            }
        }
        assert!(
            wb < wa,
            "optimisation did not tighten anything: {wb} vs {wa}"
        );
        for _ in 0..2000 {
            let mut h: Vec<f64> = x0.iter().map(|v| v + eps * lcg(&mut seed)).collect();
            for (k, m) in chain[..3].iter().enumerate() {
                let z: Vec<f64> = (0..m.out)
                    .map(|j| m.b[j] + m.row(j).iter().zip(&h).map(|(w, v)| w * v).sum::<f64>())
                    .collect();
                for (j, zj) in z.iter().enumerate() {
                    assert!(*zj >= b.lo[k][j] - 1e-9 && *zj <= b.hi[k][j] + 1e-9);
                }
                h = z.iter().map(|v| v.max(0.0)).collect();
            }
        }
    }
}
