//! M-FAC (P26, "M-FAC: Efficient Matrix-Free Approximations of Second-Order Information"): the inverse of the
//! empirical Fisher F = damp·I + (1/m) Σ_i g_i g_iᵀ over a sliding window of the last m gradients, applied to
//! a vector without forming any d × d matrix.
//!
//! [`MfacInverse`] keeps the window G (m × d) and its Gram matrix K = G Gᵀ. By Woodbury,
//! F⁻¹x = x/damp - Gᵀz/damp² with z = (m·I + K/damp)⁻¹ G x, so an inverse-Hessian-vector product costs O(dm + m²) (two passes over G and two triangular solves), and
//! replacing one gradient of the window costs O(dm + m³) (one row of K, one Cholesky factorisation). Slots not
//! yet filled hold zeros (as the reference's buffer does), so the first products are x/damp.
//!
//! The optimizer follows IST-DASLab/M-FAC `optim.py` (MFAC): g ← ∇f + λw is pushed into the window first,
//! u = F⁻¹g, with momentum u ← v = μ·v + (1-μ)·u (an EMA without bias correction), then w ← w - lr·u.

use super::hyper::{hyperparams, parse};
use super::{Buf, HyperGroups, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::{Error, Result, Spec};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};

/// F⁻¹ for F = damp·I + (1/m) GᵀG over a ring buffer of m gradients of dimension d.
#[derive(Debug, Clone)]
pub struct MfacInverse {
    d: usize,
    m: usize,
    damp: f64,
    /// m × d, row-major; row i is the i-th slot of the window.
    g: Vec<f64>,
    /// m × m Gram matrix G Gᵀ.
    gram: Vec<f64>,
    /// Lower Cholesky factor of m·I + K/damp.
    chol: Vec<f64>,
    next: usize,
}

impl MfacInverse {
    /// An empty window (all slots zero).
    pub fn new(d: usize, m: usize, damp: f64) -> Result<Self> {
        if m == 0 || d == 0 {
            return Err(Error::invalid(format!(
                "M-FAC needs ngrads >= 1 and parameters (got m={m}, d={d})"
            )));
        }
        if !(damp > 0.0 && damp.is_finite()) {
            return Err(Error::invalid(format!(
                "M-FAC: damp={damp} must be positive"
            )));
        }
        let mut s = MfacInverse {
            d,
            m,
            damp,
            g: vec![0.0; m * d],
            gram: vec![0.0; m * m],
            chol: vec![0.0; m * m],
            next: 0,
        };
        s.factorize()?;
        Ok(s)
    }

    /// The static inverse for a fixed set of gradients (rows of `grads`, m × d).
    pub fn from_gradients(grads: &[f64], m: usize, damp: f64) -> Result<Self> {
        if m == 0 || !grads.len().is_multiple_of(m) {
            return Err(Error::Shape(format!(
                "{} values are not {m} gradients",
                grads.len()
            )));
        }
        let mut s = Self::new(grads.len() / m, m, damp)?;
        for row in grads.chunks(grads.len() / m) {
            s.push(row)?;
        }
        Ok(s)
    }

    fn dot_row(&self, i: usize, x: &[f64]) -> f64 {
        self.g[i * self.d..(i + 1) * self.d]
            .iter()
            .zip(x)
            .map(|(a, b)| a * b)
            .sum()
    }

    fn factorize(&mut self) -> Result<()> {
        let m = self.m;
        for i in 0..m {
            for j in 0..=i {
                let mut s = self.gram[i * m + j] / self.damp + if i == j { m as f64 } else { 0.0 };
                for k in 0..j {
                    s -= self.chol[i * m + k] * self.chol[j * m + k];
                }
                if i == j {
                    if s <= 0.0 || !s.is_finite() {
                        return Err(Error::NonFinite("M-FAC: the window's Gram system is not positive definite (NaN gradients?)".into()));
                    }
                    self.chol[i * m + i] = s.sqrt();
                } else {
                    self.chol[i * m + j] = s / self.chol[j * m + j];
                }
            }
        }
        Ok(())
    }

    /// Replaces the oldest gradient of the window by `grad` (O(dm + m³)).
    pub fn push(&mut self, grad: &[f64]) -> Result<()> {
        if grad.len() != self.d {
            return Err(Error::Shape(format!(
                "a gradient of {} values for M-FAC of dimension {}",
                grad.len(),
                self.d
            )));
        }
        let (i, m) = (self.next, self.m);
        self.g[i * self.d..(i + 1) * self.d].copy_from_slice(grad);
        for j in 0..m {
            let k = self.dot_row(j, grad);
            self.gram[i * m + j] = k;
            self.gram[j * m + i] = k;
        }
        self.next = (i + 1) % m;
        self.factorize()
    }

    /// F⁻¹ x (O(dm + m²)).
    pub fn ihvp(&self, x: &[f64]) -> Result<Vec<f64>> {
        if x.len() != self.d {
            return Err(Error::Shape(format!(
                "a vector of {} values for M-FAC of dimension {}",
                x.len(),
                self.d
            )));
        }
        let m = self.m;
        let mut z: Vec<f64> = (0..m).map(|i| self.dot_row(i, x)).collect();
        for i in 0..m {
            let s: f64 = (0..i).map(|k| self.chol[i * m + k] * z[k]).sum();
            z[i] = (z[i] - s) / self.chol[i * m + i];
        }
        for i in (0..m).rev() {
            let s: f64 = (i + 1..m).map(|k| self.chol[k * m + i] * z[k]).sum();
            z[i] = (z[i] - s) / self.chol[i * m + i];
        }
        let mut out: Vec<f64> = x.iter().map(|v| v / self.damp).collect();
        let c = 1.0 / (self.damp * self.damp);
        for (i, zi) in z.iter().enumerate() {
            let row = &self.g[i * self.d..(i + 1) * self.d];
            out.iter_mut().zip(row).for_each(|(o, r)| *o -= c * zi * r);
        }
        Ok(out)
    }

    /// The window's slot `i` (for saving).
    fn row(&self, i: usize) -> &[f64] {
        &self.g[i * self.d..(i + 1) * self.d]
    }
}

hyperparams! {
    /// M-FAC's hyperparameters and the official code's defaults.
    pub struct MfacConfig {
        /// Learning rate.
        lr: f64 = 1e-3, NonNegative;
        /// Momentum (an EMA of F⁻¹g, no bias correction).
        momentum: f64 = 0.0, Beta;
        /// Coupled L2 weight decay.
        weight_decay: f64 = 0.0, NonNegative;
        /// Gradients in the sliding window (m).
        ngrads: usize = 1024, PositiveCount;
        /// Dampening λ of the Fisher approximation.
        damp: f64 = 1e-5, Positive;
    }
}

/// The M-FAC optimizer over all parameters together.
#[derive(Debug, Clone)]
pub struct Mfac {
    h: HyperGroups<MfacConfig>,
    state: OptimizerState,
    inv: Option<MfacInverse>,
}

impl Mfac {
    /// M-FAC with `config`.
    pub fn new(config: MfacConfig) -> Result<Self> {
        Ok(Mfac {
            h: HyperGroups::new("mfac", config)?,
            state: OptimizerState::new("mfac"),
            inv: None,
        })
    }

    /// From a spec: `mfac:lr=1e-3,momentum=0,weight_decay=0,ngrads=1024,damp=1e-5`.
    pub fn from_spec(s: &mut Spec) -> Result<Self> {
        Self::new(parse("mfac", MfacConfig::default(), s)?)
    }

    fn flat(t: &Tensor) -> Result<Vec<f64>> {
        Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?)
    }
}

impl Optimizer for Mfac {
    optimizer_accessors!();
    /// `momentum`, `grad.0`, ..., `grad.{m-1}`.
    fn buffer_names(&self) -> Vec<String> {
        std::iter::once("momentum".to_string())
            .chain((0..self.h.config().ngrads).map(|i| format!("grad.{i}")))
            .collect()
    }
    fn buffer_count(&self) -> usize {
        self.h.config().ngrads.saturating_add(1)
    }
    /// The window of m gradients (f64) and the m × m Gram matrix with its Cholesky factor.
    fn extra_state_bytes(&self, params: f64) -> f64 {
        let m = self.h.config().ngrads as f64;
        8.0 * (m * params + 2.0 * m * m)
    }
    fn fresh(&self) -> Box<dyn Optimizer> {
        Box::new(Mfac {
            h: self.h.clone(),
            state: OptimizerState::new("mfac"),
            inv: None,
        })
    }
    fn load_state(&mut self, state: OptimizerState, params: &[Param]) -> Result<()> {
        state.check(self.name(), &self.buffer_names(), params)?;
        self.state = state;
        self.inv = None; // rebuilt from the saved window on the next step
        Ok(())
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        let c = self.h.config();
        let (lr, mu, wd, damp, m) = (c.lr, c.momentum, c.weight_decay, c.damp, c.ngrads);
        let active: Vec<&Param> = params
            .iter()
            .filter(|p| grads.get(p.tensor()).is_some())
            .collect();
        let d: usize = active.iter().map(|p| p.numel()).sum();
        let mut g = Vec::with_capacity(d);
        let mut x = Vec::with_capacity(d);
        for p in &active {
            g.extend(Self::flat(grads.get(p.tensor()).expect("filtered"))?);
            x.extend(Self::flat(p.tensor())?);
        }
        if wd != 0.0 {
            g.iter_mut().zip(&x).for_each(|(gi, xi)| *gi += wd * xi);
        }
        if self.inv.as_ref().is_none_or(|inv| inv.d != d || inv.m != m) {
            // Fresh, or restored from saved state: rebuild the window from the per-parameter slots.
            let mut inv = MfacInverse::new(d, m, damp)?;
            let step = self.state.step as usize;
            let filled = step.min(m);
            let oldest = if step >= m { step % m } else { 0 };
            for k in 0..filled {
                let slot = (oldest + k) % m;
                let mut row = Vec::with_capacity(d);
                for p in &active {
                    match self.state.buffers.get(&p.name) {
                        Some(b) => row.extend(buf_f64(&b[1 + slot])),
                        None => row.extend(std::iter::repeat_n(0.0, p.numel())),
                    }
                }
                inv.next = slot;
                inv.push(&row)?;
            }
            inv.next = step % m;
            self.inv = Some(inv);
        }
        let inv = self.inv.as_mut().expect("set above");
        let slot = inv.next;
        inv.push(&g)?;
        let u = inv.ihvp(&g)?;
        self.state.step += 1;
        // Write back per parameter: the window slot, the momentum, and x ← x - lr·(momentum or F⁻¹g).
        let mut off = 0;
        for p in &active {
            let n = p.numel();
            if !self.state.buffers.contains_key(&p.name) {
                let zeros = (0..=m)
                    .map(|_| Buf::zeros(p.var.dtype(), n))
                    .collect::<Result<Vec<_>>>()?;
                self.state.buffers.insert(p.name.clone(), zeros);
            }
            let Some(bufs) = self.state.buffers.get_mut(&p.name) else {
                continue;
            };
            let dir: Vec<f64> = if mu > 0.0 {
                let mut mom = buf_f64(&bufs[0]);
                mom.iter_mut()
                    .zip(&u[off..off + n])
                    .for_each(|(v, ui)| *v = mu * *v + (1.0 - mu) * ui);
                bufs[0] = to_buf(&mom, p.var.dtype());
                mom
            } else {
                u[off..off + n].to_vec()
            };
            bufs[1 + slot] = to_buf(
                inv.row(slot).get(off..off + n).unwrap_or(&[]),
                p.var.dtype(),
            );
            let new: Vec<f64> = x[off..off + n]
                .iter()
                .zip(&dir)
                .map(|(xi, di)| xi - lr * di)
                .collect();
            let t = Tensor::from_vec(new, p.var.dims(), p.tensor().device())?
                .to_dtype(p.var.dtype())?;
            p.var.set(&t)?;
            off += n;
        }
        Ok(())
    }
}

fn buf_f64(b: &Buf) -> Vec<f64> {
    match b {
        Buf::F32(v) => v.iter().map(|&x| x as f64).collect(),
        Buf::F64(v) => v.clone(),
    }
}

fn to_buf(v: &[f64], dtype: DType) -> Buf {
    match dtype {
        DType::F32 => Buf::F32(v.iter().map(|&x| x as f32).collect()),
        _ => Buf::F64(v.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curvature::jacobi_eigen;

    /// (damp I + GᵀG/m)⁻¹ v by eigen-decomposition of the dense matrix.
    fn dense_inverse(g: &[f64], m: usize, d: usize, damp: f64, v: &[f64]) -> Vec<f64> {
        let mut f = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                f[i * d + j] = (0..m).map(|k| g[k * d + i] * g[k * d + j]).sum::<f64>() / m as f64
                    + if i == j { damp } else { 0.0 };
            }
        }
        let e = jacobi_eigen(&f, d);
        let mut out = vec![0.0; d];
        for c in 0..d {
            let coef: f64 = (0..d).map(|k| e.vectors[k * d + c] * v[k]).sum::<f64>() / e.values[c];
            for (k, o) in out.iter_mut().enumerate() {
                *o += coef * e.vectors[k * d + c];
            }
        }
        out
    }

    #[test]
    fn woodbury_equals_the_dense_inverse_and_the_window_slides() {
        use rand::{Rng, SeedableRng};
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (m, d, damp) = (6, 20, 0.05);
        let grads: Vec<f64> = (0..(m + 3) * d).map(|_| r.gen_range(-1.0..1.0)).collect();
        let v: Vec<f64> = (0..d).map(|_| r.gen_range(-1.0..1.0)).collect();
        let mut inv = MfacInverse::new(d, m, damp).unwrap();
        for row in grads.chunks(d) {
            inv.push(row).unwrap();
        }
        // After m + 3 pushes the window holds the last m gradients.
        let window = &grads[3 * d..];
        let want = dense_inverse(window, m, d, damp, &v);
        let got = inv.ihvp(&v).unwrap();
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            err < 1e-8 * want.iter().map(|x| x.abs()).fold(0.0, f64::max),
            "{err}"
        );
        let stat = MfacInverse::from_gradients(window, m, damp).unwrap();
        let s = stat.ihvp(&v).unwrap();
        assert!(s
            .iter()
            .zip(&want)
            .all(|(a, b)| (a - b).abs() < 1e-8 * b.abs().max(1.0)));
        // Cold start: an empty window is damp·I.
        let empty = MfacInverse::new(d, m, damp).unwrap();
        assert!(empty
            .ihvp(&v)
            .unwrap()
            .iter()
            .zip(&v)
            .all(|(a, b)| (a - b / damp).abs() < 1e-12));
        assert!(MfacInverse::new(d, 0, damp).is_err() && MfacInverse::new(d, m, 0.0).is_err());
    }
}
