//! AdamP and SGDP (P30, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant
//! Weights"), following clovaai/AdamP `adamp/adamp.py` and `adamp/sgdp.py` (PyPI `adamp` 0.3.0).
//!
//! For parameters of rank ≥ 2 the update is projected onto the tangent space of the weight when the weight
//! looks scale-invariant: first per output channel (rows of the `[size0, -1]` view), then for the whole tensor;
//! the test is max |cos(g, x)| < delta / sqrt(row length), with the raw gradient g, and the first view that
//! passes is used. A projected update also scales weight decay by `wd_ratio`.
//!
//! Reference-code details kept as is: SGDP's momentum buffer starts at zero and is dampened from the first
//! step (unlike `torch.optim.SGD`); without Nesterov SGDP projects its momentum buffer itself (the update is
//! the buffer); SGDP's decay is x ← x·(1 - lr·λ·ratio/(1-momentum)).

use super::hyper::hyperparams;
use super::kernel::{Kernel, Real};
use super::FusedStep;
use crate::nn::Param;

hyperparams! {
    /// AdamP's hyperparameters and the official code's defaults.
    pub struct AdamPConfig {
        /// Learning rate.
        lr: f64 = 1e-3, NonNegative;
        /// Decay of the first moment.
        beta1: f64 = 0.9, Beta;
        /// Decay of the second moment.
        beta2: f64 = 0.999, Beta;
        /// Added to the bias-corrected root of the second moment (and to norms in the projection).
        eps: f64 = 1e-8, NonNegative;
        /// Decoupled weight decay.
        weight_decay: f64 = 0.0, NonNegative;
        /// Threshold of the scale-invariance test.
        delta: f64 = 0.1, NonNegative;
        /// Weight-decay factor of projected updates.
        wd_ratio: f64 = 0.1, NonNegative;
        /// Nesterov momentum.
        nesterov: bool = false, Bool;
    }
}

hyperparams! {
    /// SGDP's hyperparameters and the official code's defaults.
    pub struct SgdPConfig {
        /// Learning rate.
        lr: f64 = 1e-3, NonNegative;
        /// Momentum factor.
        momentum: f64 = 0.0, Beta;
        /// Dampening of the momentum.
        dampening: f64 = 0.0, Unit;
        /// Decoupled weight decay.
        weight_decay: f64 = 0.0, NonNegative;
        /// Nesterov momentum.
        nesterov: bool = false, Bool;
        /// Added to norms in the projection.
        eps: f64 = 1e-8, NonNegative;
        /// Threshold of the scale-invariance test.
        delta: f64 = 0.1, NonNegative;
        /// Weight-decay factor of projected updates.
        wd_ratio: f64 = 0.1, NonNegative;
    }
}

/// The projection settings and the parameter's row count (`size0`; 0 for rank < 2, never projected).
#[derive(Debug, Clone, Copy)]
struct Projection {
    rows: usize,
    delta: f64,
    wd_ratio: f64,
    eps: f64,
}

/// |cos| of each row of `a` and `b` with norms clamped at eps (as `F.cosine_similarity`), in f64.
fn max_row_cosine<T: Real>(a: &[T], b: &[T], rows: usize, eps: f64) -> f64 {
    let len = a.len() / rows;
    (0..rows)
        .map(|r| {
            let (ra, rb) = (&a[r * len..(r + 1) * len], &b[r * len..(r + 1) * len]);
            let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
            for (&x, &y) in ra.iter().zip(rb) {
                let (x, y) = (x.to_f64().unwrap(), y.to_f64().unwrap());
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
            (ab / (aa.sqrt().max(eps) * bb.sqrt().max(eps))).abs()
        })
        .fold(0.0, f64::max)
}

impl Projection {
    /// Projects `update` in place when the test fires; returns the weight-decay factor (wd_ratio or 1) and
    /// whether it fired.
    fn apply<T: Real>(&self, x: &[T], g: &[T], update: &mut [T]) -> (f64, bool) {
        if self.rows == 0 {
            return (1.0, false);
        }
        for rows in [self.rows, 1] {
            let len = x.len() / rows;
            if max_row_cosine(g, x, rows, self.eps) < self.delta / (len as f64).sqrt() {
                for r in 0..rows {
                    let (xr, ur) = (
                        &x[r * len..(r + 1) * len],
                        &mut update[r * len..(r + 1) * len],
                    );
                    let norm = xr
                        .iter()
                        .map(|&v| v.to_f64().unwrap().powi(2))
                        .sum::<f64>()
                        .sqrt()
                        + self.eps;
                    let dot: f64 = xr
                        .iter()
                        .zip(ur.iter())
                        .map(|(&a, &b)| a.to_f64().unwrap() / norm * b.to_f64().unwrap())
                        .sum();
                    let (inv, dot) = (T::of(1.0 / norm), T::of(dot));
                    for (u, &xv) in ur.iter_mut().zip(xr) {
                        *u = *u - xv * inv * dot;
                    }
                }
                return (self.wd_ratio, true);
            }
        }
        (1.0, false)
    }
}

/// The projection of `p` with the test's settings.
fn projection(p: &Param, delta: f64, wd_ratio: f64, eps: f64) -> Projection {
    let dims = p.var.dims();
    Projection {
        rows: if dims.len() > 1 { dims[0] } else { 0 },
        delta,
        wd_ratio,
        eps,
    }
}

fused_optimizer! {
    /// AdamP.
    pub struct AdamP("adamp", AdamPConfig, defaults = AdamPConfig::default());
}

fused_optimizer! {
    /// SGDP.
    pub struct SgdP("sgdp", SgdPConfig, defaults = SgdPConfig::default());
}

pub(crate) struct AdamPKernel {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    nesterov: bool,
    step: i32,
    proj: Projection,
}

impl Kernel for AdamPKernel {
    /// Only tensors that can be projected (rank ≥ 2) need the whole tensor at once.
    fn whole(&self) -> bool {
        self.proj.rows > 0
    }

    #[inline(always)]
    fn run<T: Real>(&self, x: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let [m, v] = s else {
            unreachable!("adamp has two buffers")
        };
        let n = x.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        let (b1, w1, b2, w2) = (
            T::of(self.beta1),
            T::of(1.0 - self.beta1),
            T::of(self.beta2),
            T::of(1.0 - self.beta2),
        );
        let bc2_sqrt = T::of((1.0 - self.beta2.powi(self.step)).sqrt());
        let eps = T::of(self.eps);
        let step_size = T::of(self.lr / (1.0 - self.beta1.powi(self.step)));
        let nesterov = self.nesterov;
        // Adam's moments and the (Nesterov) step direction of one coordinate, shared by both paths.
        let adam_perturb = |m: &mut T, v: &mut T, g: T| -> T {
            *m = *m * b1 + g * w1;
            *v = *v * b2 + w2 * g * g;
            let denom = v.sqrt() / bc2_sqrt + eps;
            let num = if nesterov { b1 * *m + w1 * g } else { *m };
            num / denom
        };
        if self.proj.rows == 0 {
            // Rank < 2: no projection, so one fused pass (same arithmetic as below with ratio 1).
            let decay = T::of(1.0 - self.lr * self.weight_decay);
            for i in 0..n {
                let perturb = adam_perturb(&mut m[i], &mut v[i], g[i]);
                let mut xi = x[i];
                if self.weight_decay > 0.0 {
                    xi = xi * decay;
                }
                x[i] = xi - step_size * perturb;
            }
            return;
        }
        let mut perturb: Vec<T> = Vec::with_capacity(x.len());
        for i in 0..n {
            perturb.push(adam_perturb(&mut m[i], &mut v[i], g[i]));
        }
        let (ratio, _) = self.proj.apply(x, g, &mut perturb);
        let decay = T::of(1.0 - self.lr * self.weight_decay * ratio);
        for i in 0..n {
            if self.weight_decay > 0.0 {
                x[i] = x[i] * decay;
            }
            x[i] = x[i] - step_size * perturb[i];
        }
    }
}

pub(crate) struct SgdpKernel {
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    proj: Projection,
}

impl Kernel for SgdpKernel {
    fn whole(&self) -> bool {
        self.proj.rows > 0
    }

    #[inline(always)]
    fn run<T: Real>(&self, x: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let n = x.len();
        let (g, buf) = (&g[..n], &mut s[0][..n]);
        let (mu, damp) = (T::of(self.momentum), T::of(1.0 - self.dampening));
        for i in 0..n {
            buf[i] = buf[i] * mu + damp * g[i];
        }
        let mut nesterov_update: Vec<T>;
        let update: &mut [T] = if self.nesterov {
            nesterov_update = g
                .iter()
                .zip(buf.iter())
                .map(|(&gi, &bi)| gi + mu * bi)
                .collect();
            &mut nesterov_update
        } else {
            buf
        };
        let (ratio, _) = self.proj.apply(x, g, update);
        let decay = T::of(1.0 - self.lr * self.weight_decay * ratio / (1.0 - self.momentum));
        let lr = T::of(self.lr);
        for i in 0..n {
            if self.weight_decay != 0.0 {
                x[i] = x[i] * decay;
            }
            x[i] = x[i] - lr * update[i];
        }
    }
}

impl FusedStep for AdamP {
    type Config = AdamPConfig;
    type Kernel = AdamPKernel;
    const BUFFERS: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    fn kernel(p: &Param, h: &AdamPConfig, _: bool, step: u64) -> AdamPKernel {
        AdamPKernel {
            lr: h.lr,
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            weight_decay: h.weight_decay,
            nesterov: h.nesterov,
            step: step as i32,
            proj: projection(p, h.delta, h.wd_ratio, h.eps),
        }
    }
}

impl FusedStep for SgdP {
    type Config = SgdPConfig;
    type Kernel = SgdpKernel;
    const BUFFERS: &'static [&'static str] = &["momentum"];
    fn kernel(p: &Param, h: &SgdPConfig, _: bool, _: u64) -> SgdpKernel {
        SgdpKernel {
            lr: h.lr,
            momentum: h.momentum,
            dampening: h.dampening,
            weight_decay: h.weight_decay,
            nesterov: h.nesterov,
            proj: projection(p, h.delta, h.wd_ratio, h.eps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projected_update_is_orthogonal_to_each_row() {
        // A gradient orthogonal to every row of x makes the channel test fire; the projected update then has
        // zero inner product with each row (up to rounding).
        let x: Vec<f64> = vec![1.0, 2.0, -1.0, 0.5, 0.0, 3.0];
        let g: Vec<f64> = vec![2.0, -1.0, 0.0, 3.0, 1.0, -0.5];
        let mut u: Vec<f64> = vec![0.3, -0.7, 1.1, 0.2, 0.9, -0.4];
        let proj = Projection {
            rows: 2,
            delta: 0.1,
            wd_ratio: 0.1,
            eps: 1e-8,
        };
        let (ratio, fired) = proj.apply(&x, &g, &mut u);
        assert!(fired && ratio == 0.1);
        for r in 0..2 {
            let dot: f64 = (0..3).map(|i| x[r * 3 + i] * u[r * 3 + i]).sum();
            assert!(dot.abs() < 1e-7, "row {r}: {dot}");
        }
        // A gradient aligned with x does not trigger the projection.
        let mut u2 = u.clone();
        assert_eq!(proj.apply(&x, &x, &mut u2), (1.0, false));
        assert_eq!(u2, u);
    }
}
