//! P31's network: a layered vector field on pre-activations (the official code's `mlp_discrete_vf`). With
//! a_l = σ(u_l), σ(z) = 1/(1 + e^{−4z+2}), input x and state layers 0..=L (the last is the output),
//!
//!   u_l ← a_{l−1} K_l + b_l + a_{l+1} B_l          (a_{−1} = x; no feedback term on the output layer)
//!   u_out ← … + β ∂ℓ/∂a_out                        (the nudge, ℓ the cross-entropy of the readout)
//!
//! with forward kernels K_l (fan-in × size) and biases, feedback kernels B_l (size_{l+1} × size_l, no bias),
//! iterated with step 1 from u = 0, and a trainable readout z = a_out R + r on which ℓ is computed. The feedback
//! kernels are free parameters: the weights are symmetric only when B_l = K_{l+1}ᵀ. States are complex (the
//! nudges β e^{2πik/N} are), stored planar: rows 0..b hold real parts, rows b..2b imaginary parts.

use crate::nn::matmul::{gemm_into, Strided};
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::{Error, Result};
use num_complex::Complex64 as C;

/// The activation σ(z) = 1/(1 + e^{−4z+2}) (σ(0.5) = 0.5 with slope 1 there), holomorphic.
pub fn act(z: C) -> C {
    C::new(1.0, 0.0) / (C::new(1.0, 0.0) + (C::new(2.0, 0.0) - 4.0 * z).exp())
}

/// σ′(z) = 4 σ(z)(1 − σ(z)).
pub fn dact(z: C) -> C {
    let s = act(z);
    4.0 * s * (C::new(1.0, 0.0) - s)
}

/// A batch of complex vectors of length n: `v[r·n + j]` for rows r < b real parts, rows b..2b imaginary parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Planar {
    pub b: usize,
    pub n: usize,
    pub v: Vec<f64>,
}

impl Planar {
    pub fn zeros(b: usize, n: usize) -> Self {
        Planar {
            b,
            n,
            v: vec![0.0; 2 * b * n],
        }
    }

    /// A real batch (`b × n` row-major).
    pub fn real(b: usize, n: usize, re: &[f64]) -> Self {
        let mut p = Planar::zeros(b, n);
        p.v[..b * n].copy_from_slice(re);
        p
    }

    pub fn get(&self, r: usize, j: usize) -> C {
        C::new(self.v[r * self.n + j], self.v[(self.b + r) * self.n + j])
    }

    pub fn set(&mut self, r: usize, j: usize, z: C) {
        self.v[r * self.n + j] = z.re;
        self.v[(self.b + r) * self.n + j] = z.im;
    }

    /// Elementwise f.
    pub fn map(&self, f: impl Fn(C) -> C) -> Planar {
        let mut out = Planar::zeros(self.b, self.n);
        for r in 0..self.b {
            for j in 0..self.n {
                out.set(r, j, f(self.get(r, j)));
            }
        }
        out
    }

    /// The real parts, `b × n`.
    pub fn re(&self) -> &[f64] {
        &self.v[..self.b * self.n]
    }

    /// self += a · K for K (a.n × self.n) real, row-major.
    fn add_matmul(&mut self, a: &Planar, k: &[f64]) -> Result<()> {
        let (m, n, kk) = (2 * a.b, self.n, a.n);
        let av = Strided::row_major(&a.v, kk);
        let kv = Strided::row_major(k, n);
        Ok(gemm_into(&mut self.v, (m, n, kk), av, kv, true)?)
    }

    /// self += a · Kᵀ for K (self.n × a.n) real, row-major.
    fn add_matmul_t(&mut self, a: &Planar, k: &[f64]) -> Result<()> {
        let (m, n, kk) = (2 * a.b, self.n, a.n);
        let av = Strided::row_major(&a.v, kk);
        let kv = Strided::row_major(k, kk).t();
        Ok(gemm_into(&mut self.v, (m, n, kk), av, kv, true)?)
    }

    /// Adds a real row vector to every real row.
    fn add_bias(&mut self, bias: &[f64]) {
        for r in 0..self.b {
            self.v[r * self.n..(r + 1) * self.n]
                .iter_mut()
                .zip(bias)
                .for_each(|(v, b)| *v += b);
        }
    }
}

/// The shape of a network: input size, state layer sizes (the last is the output) and classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub input: usize,
    pub layers: Vec<usize>,
    pub classes: usize,
}

/// The parameters, each a flat row-major f64 array.
#[derive(Debug, Clone, PartialEq)]
pub struct EpNet {
    pub shape: Shape,
    /// K_l: fan-in × size_l.
    pub forward: Vec<Vec<f64>>,
    pub bias: Vec<Vec<f64>>,
    /// B_l: size_{l+1} × size_l, for l < L.
    pub feedback: Vec<Vec<f64>>,
    /// R: size_out × classes, and its bias.
    pub readout: Vec<f64>,
    pub readout_bias: Vec<f64>,
}

/// Flax's `lecun_normal`: a normal truncated at two standard deviations, rescaled to variance 1/fan_in.
fn lecun_normal(rng: &mut Rng, fan_in: usize, n: usize) -> Vec<f64> {
    let std = (1.0 / fan_in as f64).sqrt() / 0.879_625_661_034_239_8;
    (0..n)
        .map(|_| loop {
            let z = normal(rng);
            if z.abs() <= 2.0 {
                break std * z;
            }
        })
        .collect()
}

impl EpNet {
    /// Seeded initialisation (Flax's default: `lecun_normal` kernels, zero biases), then the feedback kernels
    /// rotated towards the forward ones: B_l ← sin(α) B_l + cos(α) K_{l+1}ᵀ (α in degrees; 0 gives symmetric
    /// weights, 90 independent ones), as the official code's `rotate`.
    pub fn new(shape: Shape, angle_deg: f64, seed: u64) -> Result<Self> {
        if shape.input == 0
            || shape.layers.is_empty()
            || shape.layers.contains(&0)
            || shape.classes < 2
        {
            return Err(Error::invalid(format!(
                "EP network: need an input, at least one state layer, no empty layer and two classes (got {shape:?})"
            )));
        }
        if !angle_deg.is_finite() {
            return Err(Error::invalid(
                "EP network: the rotation angle must be finite",
            ));
        }
        let params: usize = Self::sizes(&shape).iter().sum();
        crate::memory::check(
            "the EP network",
            params as f64 * 8.0 * 4.0,
            "use smaller layers",
        )?;
        let mut rng = rng_for(seed, Stream::Init, 31);
        let l = &shape.layers;
        let mut forward = Vec::new();
        let mut bias = Vec::new();
        for (i, &n) in l.iter().enumerate() {
            let fan_in = if i == 0 { shape.input } else { l[i - 1] };
            forward.push(lecun_normal(&mut rng, fan_in, fan_in * n));
            bias.push(vec![0.0; n]);
        }
        let mut feedback = Vec::new();
        for i in 0..l.len() - 1 {
            feedback.push(lecun_normal(&mut rng, l[i + 1], l[i + 1] * l[i]));
        }
        let out = *l.last().expect("a layer");
        let readout = lecun_normal(&mut rng, out, out * shape.classes);
        let mut net = EpNet {
            readout_bias: vec![0.0; shape.classes],
            shape,
            forward,
            bias,
            feedback,
            readout,
        };
        let (s, c) = angle_deg.to_radians().sin_cos();
        for i in 0..net.feedback.len() {
            let (rows, cols) = (net.shape.layers[i + 1], net.shape.layers[i]);
            for p in 0..rows {
                for q in 0..cols {
                    // B[p, q] pairs with K_{i+1}[q, p] (K_{i+1}: size_i × size_{i+1}).
                    let k = net.forward[i + 1][q * rows + p];
                    let b = &mut net.feedback[i][p * cols + q];
                    *b = s * *b + c * k;
                }
            }
        }
        Ok(net)
    }

    /// Parameter counts in the order forward, bias, feedback (per layer), readout, readout bias.
    fn sizes(shape: &Shape) -> Vec<usize> {
        let l = &shape.layers;
        let mut v = Vec::new();
        for (i, &n) in l.iter().enumerate() {
            v.push(if i == 0 { shape.input } else { l[i - 1] } * n);
            v.push(n);
        }
        for i in 0..l.len() - 1 {
            v.push(l[i + 1] * l[i]);
        }
        v.push(l[l.len() - 1] * shape.classes);
        v.push(shape.classes);
        v
    }

    /// Every parameter array, in a fixed order (forward and bias per layer, feedback, readout, readout bias).
    pub fn arrays(&self) -> Vec<&Vec<f64>> {
        let mut v = Vec::new();
        for (k, b) in self.forward.iter().zip(&self.bias) {
            v.push(k);
            v.push(b);
        }
        v.extend(self.feedback.iter());
        v.push(&self.readout);
        v.push(&self.readout_bias);
        v
    }

    /// The same arrays, mutable.
    pub fn arrays_mut(&mut self) -> Vec<&mut Vec<f64>> {
        let mut v = Vec::new();
        for (k, b) in self.forward.iter_mut().zip(self.bias.iter_mut()) {
            v.push(k);
            v.push(b);
        }
        v.extend(self.feedback.iter_mut());
        v.push(&mut self.readout);
        v.push(&mut self.readout_bias);
        v
    }

    /// Names of [`EpNet::arrays`], for checkpoints and reports.
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for i in 0..self.shape.layers.len() {
            v.push(format!("forward{i}.weight"));
            v.push(format!("forward{i}.bias"));
        }
        for i in 0..self.shape.layers.len() - 1 {
            v.push(format!("feedback{i}.weight"));
        }
        v.push("readout.weight".into());
        v.push("readout.bias".into());
        v
    }

    /// The state size D (every state layer).
    pub fn state_size(&self) -> usize {
        self.shape.layers.iter().sum()
    }

    /// The readout's logits of output activations (complex).
    pub fn logits(&self, a_out: &Planar) -> Result<Planar> {
        let mut z = Planar::zeros(a_out.b, self.shape.classes);
        z.add_matmul(a_out, &self.readout)?;
        z.add_bias(&self.readout_bias);
        Ok(z)
    }

    /// Per sample: softmax(z) − y (the cross-entropy's gradient in the logits), holomorphic in z.
    pub fn logit_grad(z: &Planar, labels: &[usize]) -> Planar {
        let mut g = Planar::zeros(z.b, z.n);
        for (r, &label) in labels.iter().enumerate().take(z.b) {
            let m = (0..z.n).map(|j| z.get(r, j).re).fold(f64::MIN, f64::max);
            let e: Vec<C> = (0..z.n).map(|j| (z.get(r, j) - m).exp()).collect();
            let s: C = e.iter().sum();
            for (j, ej) in e.iter().enumerate() {
                let y = if label == j { 1.0 } else { 0.0 };
                g.set(r, j, ej / s - y);
            }
        }
        g
    }

    /// ∂ℓ/∂a_out = (softmax(z) − y) Rᵀ.
    pub fn output_grad(&self, a_out: &Planar, labels: &[usize]) -> Result<Planar> {
        let g = Self::logit_grad(&self.logits(a_out)?, labels);
        let mut d = Planar::zeros(a_out.b, a_out.n);
        d.add_matmul_t(&g, &self.readout)?;
        Ok(d)
    }

    /// Mean cross-entropy of real output activations.
    pub fn loss(&self, a_out: &Planar, labels: &[usize]) -> Result<f64> {
        let z = self.logits(a_out)?;
        let mut total = 0.0;
        for r in 0..z.b {
            let row: Vec<f64> = (0..z.n).map(|j| z.get(r, j).re).collect();
            let m = row.iter().copied().fold(f64::MIN, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            total += lse - row[labels[r]];
        }
        Ok(total / z.b as f64)
    }

    /// One step of the dynamics from states `u` (pre-activations) with input `x` and nudge β.
    pub fn step(&self, u: &[Planar], x: &Planar, beta: C, labels: &[usize]) -> Result<Vec<Planar>> {
        let a: Vec<Planar> = u.iter().map(|p| p.map(act)).collect();
        let top = u.len() - 1;
        let mut out = Vec::with_capacity(u.len());
        for l in 0..=top {
            let mut n = Planar::zeros(x.b, self.shape.layers[l]);
            n.add_matmul(if l == 0 { x } else { &a[l - 1] }, &self.forward[l])?;
            n.add_bias(&self.bias[l]);
            if l < top {
                n.add_matmul(&a[l + 1], &self.feedback[l])?;
            }
            out.push(n);
        }
        if beta != C::new(0.0, 0.0) {
            let d = self.output_grad(&a[top], labels)?;
            for r in 0..x.b {
                for j in 0..d.n {
                    let v = out[top].get(r, j) + beta * d.get(r, j);
                    out[top].set(r, j, v);
                }
            }
        }
        if out.iter().any(|p| p.v.iter().any(|v| !v.is_finite())) {
            return Err(Error::NonFinite(
                "EP: the network's state became NaN or infinite during relaxation; lower beta or the learning rate"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// `steps` steps from `u`.
    pub fn run(
        &self,
        mut u: Vec<Planar>,
        x: &Planar,
        beta: C,
        labels: &[usize],
        steps: usize,
    ) -> Result<Vec<Planar>> {
        for _ in 0..steps {
            u = self.step(&u, x, beta, labels)?;
        }
        Ok(u)
    }

    /// How far `u` is from a fixed point of the free dynamics: max |G(σ(u)) − u| over max(1, max |u|).
    pub fn fixed_point_residual(&self, u: &[Planar], x: &Planar, labels: &[usize]) -> Result<f64> {
        let next = self.step(u, x, C::new(0.0, 0.0), labels)?;
        let diff = u
            .iter()
            .zip(&next)
            .flat_map(|(a, b)| a.v.iter().zip(&b.v).map(|(p, q)| (p - q).abs()));
        let size = u
            .iter()
            .flat_map(|a| a.v.iter().map(|v| v.abs()))
            .fold(1.0, f64::max);
        Ok(diff.fold(0.0, f64::max) / size)
    }

    /// The free phase: `steps` steps with β = 0 from u = 0 (the official code's reset state).
    pub fn relax(&self, x: &Planar, labels: &[usize], steps: usize) -> Result<Vec<Planar>> {
        let u0 = self
            .shape
            .layers
            .iter()
            .map(|&n| Planar::zeros(x.b, n))
            .collect();
        self.run(u0, x, C::new(0.0, 0.0), labels, steps)
    }
}
