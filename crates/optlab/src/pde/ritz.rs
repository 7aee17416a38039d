//! The Deep Ritz method with a two-layer network (P22's representational object): u_θ(x) = Σ_j a_j tanh(w_j·x +
//! b_j) + c minimises the Monte-Carlo energy Ê(θ) = mean_i [L(u_θ, ∇u_θ) − f u_θ](x_i) over fresh uniform points of
//! the cube each step, with the Dirichlet data u = g imposed by
//! - a penalty β ∫_∂Ω (u_θ − g)² ≈ β |∂Ω| mean_k (u_θ − g)²(y_k) over uniform points y_k of the boundary (|∂Ω| =
//!   2d). The penalised energy's minimiser solves the Robin problem ∂_pL·n + 2β(u − g) = 0, so with g = u* it
//!   would miss u* by O(1/β); the data are therefore g_β = u* + ∂_pL(∇u*)·n/(2β)
//!   ([`Problem::robin_data`](super::variational::Problem::robin_data)), for which u* is the exact minimiser at
//!   every β (a moderate β keeps the optimisation well conditioned), or
//! - the ansatz u = φ N_θ with φ(x) = Π_i 4 x_i (1 − x_i), exact for g = 0.
//!
//! ∇_x u_θ and the parameter gradient of Ê are written out by hand (the energy needs ∇_x u inside the loss, so an
//! autodiff engine needs double backward; here one pass costs about four m·d multiply-adds per point).

use super::variational::{Problem, Scratch};
use crate::nn::matmul::{gemm_into, Strided};
use crate::nn::Param;
use crate::optim::kernel::exp_nonpositive;
use crate::optim::{from_spec, grads_for, Optimizer};
use crate::rng::{rng_for, Rng, Stream};
use crate::schedule::Schedule;
use crate::train::snapshot::{Reader, Writer};
use crate::{Error, Result};
use candle_core::{Device, Tensor, Var};
use rand::Rng as _;
use rayon::prelude::*;
use serde::Serialize;

/// How the boundary condition is imposed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Boundary {
    /// β ∫_∂Ω (u − g)², by boundary points.
    Penalty(f64),
    /// u = φ N with φ = Π 4 x_i (1 − x_i) (g = 0 only).
    Ansatz,
}

impl Boundary {
    /// `penalty[:β]` (β = 100) or `ansatz`.
    pub fn parse(s: &str) -> Result<Self> {
        let b =
            match s.split_once(':') {
                None if s == "penalty" => Boundary::Penalty(100.0),
                None if s == "ansatz" => Boundary::Ansatz,
                Some(("penalty", w)) => Boundary::Penalty(w.parse().map_err(|_| {
                    Error::invalid(format!("boundary {s:?}: {w:?} is not a number"))
                })?),
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown boundary treatment {s:?}: use penalty[:weight] or ansatz"
                    )))
                }
            };
        if let Boundary::Penalty(w) = b {
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::invalid(format!(
                    "the boundary penalty must be > 0, not {w}"
                )));
            }
        }
        Ok(b)
    }
}

/// The two-layer tanh network's parameters (row-major w: width × d).
#[derive(Debug, Clone, PartialEq)]
pub struct TwoLayer {
    pub d: usize,
    pub width: usize,
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    pub a: Vec<f64>,
    pub c: f64,
}

/// The parameter gradient, laid out as [`TwoLayer`].
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    pub a: Vec<f64>,
    pub c: f64,
}

impl Gradient {
    fn zeros(d: usize, m: usize) -> Self {
        Gradient {
            w: vec![0.0; m * d],
            b: vec![0.0; m],
            a: vec![0.0; m],
            c: 0.0,
        }
    }

    fn add(&mut self, o: &Gradient) {
        for (x, y) in [
            (&mut self.w, &o.w),
            (&mut self.b, &o.b),
            (&mut self.a, &o.a),
        ] {
            x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
        }
        self.c += o.c;
    }
}

/// The width limit (the parameter count is width·(d + 2) + 1).
pub const MAX_WIDTH: usize = 1 << 16;

impl TwoLayer {
    /// PyTorch's `nn.Linear` initialisation, every weight and bias U(−1/√fan_in, 1/√fan_in), with the hidden
    /// weights (not the biases) multiplied by `scale`; c = 0. A scale of a few lets the tanh units resolve
    /// solutions that oscillate on the unit cube (sin 2πx needs |w| of several units).
    pub fn init(d: usize, width: usize, scale: f64, seed: u64) -> Result<Self> {
        if width == 0 || width > MAX_WIDTH {
            return Err(Error::invalid(format!(
                "the width must be between 1 and {MAX_WIDTH}, not {width}"
            )));
        }
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::invalid(format!(
                "the initial weight scale must be > 0, not {scale}"
            )));
        }
        let mut rng = rng_for(seed, Stream::Init, 22);
        let mut uni = |n: usize, fan_in: usize| -> Vec<f64> {
            let k = 1.0 / (fan_in as f64).sqrt();
            (0..n).map(|_| k * (2.0 * rng.gen::<f64>() - 1.0)).collect()
        };
        let w: Vec<f64> = uni(width * d, d).into_iter().map(|v| scale * v).collect();
        Ok(TwoLayer {
            d,
            width,
            w,
            b: uni(width, d),
            a: uni(width, width),
            c: 0.0,
        })
    }

    /// N(x) and ∇N(x) (into `grad`), one point (batches go through matrix products in
    /// [`energy_and_gradient`]).
    pub fn eval(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let d = self.d;
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut u = self.c;
        for j in 0..self.width {
            let wj = &self.w[j * d..(j + 1) * d];
            let z = self.b[j] + wj.iter().zip(x).map(|(w, x)| w * x).sum::<f64>();
            let s = z.tanh();
            u += self.a[j] * s;
            let k = self.a[j] * (1.0 - s * s);
            grad.iter_mut().zip(wj).for_each(|(g, w)| *g += k * w);
        }
        u
    }
}

/// φ(x) = Π 4 x_i (1 − x_i) and ∇φ (into `grad`).
fn ansatz_factor(x: &[f64], grad: &mut [f64]) -> f64 {
    let f: Vec<f64> = x.iter().map(|&v| 4.0 * v * (1.0 - v)).collect();
    for i in 0..x.len() {
        let others: f64 = (0..x.len()).filter(|&k| k != i).map(|k| f[k]).product();
        grad[i] = others * 4.0 * (1.0 - 2.0 * x[i]);
    }
    f.iter().product()
}

/// The model u_θ at x with the boundary treatment: u and ∇u.
pub fn model(net: &TwoLayer, boundary: Boundary, x: &[f64], grad: &mut [f64]) -> f64 {
    let n = net.eval(x, grad);
    if boundary == Boundary::Ansatz {
        let mut gphi = vec![0.0; x.len()];
        let phi = ansatz_factor(x, &mut gphi);
        grad.iter_mut()
            .zip(&gphi)
            .for_each(|(g, gp)| *g = phi * *g + n * gp);
        phi * n
    } else {
        n
    }
}

/// Points per parallel chunk (a fixed chunking keeps the sums' order, so results do not depend on the threads).
const CHUNK: usize = 128;

/// tanh z = sign(z) (1 − e^(−2|z|)) / (1 + e^(−2|z|)) by the branch-free exponential of the optimizer kernels, so
/// that the loop over a row vectorizes (absolute error ~1e-16 against libm's tanh).
#[inline(always)]
fn tanh(z: f64) -> f64 {
    let e = exp_nonpositive(-2.0 * z.abs());
    ((1.0 - e) / (1.0 + e)).copysign(z)
}

/// One chunk of points (row-major, d per point) through the network by matrix products: N and ∇N at every
/// point, then `pointwise(i, N, ∇N, q)` gives the point's energy term and r = ∂/∂N, writing q = ∂/∂∇N; then the
/// parameter gradient of Σ_i r_i N(x_i) + q_i·∇N(x_i) is added into `g`. Returns the chunk's energy.
fn chunk_pass(
    net: &TwoLayer,
    xs: &[f64],
    g: &mut Gradient,
    mut pointwise: impl FnMut(usize, f64, &[f64], &mut [f64]) -> (f64, f64),
) -> Result<f64> {
    let (d, m) = (net.d, net.width);
    let n = xs.len() / d;
    // S = tanh(X Wᵀ + b), S1 = 1 − S².
    let mut act = vec![0.0; n * m];
    gemm_into(
        &mut act,
        (n, m, d),
        Strided::row_major(xs, d),
        Strided::row_major(&net.w, d).t(),
        false,
    )?;
    let mut s1 = vec![0.0; n * m];
    for (srow, s1row) in act.chunks_mut(m).zip(s1.chunks_mut(m)) {
        for ((s, s1), b) in srow.iter_mut().zip(s1row.iter_mut()).zip(&net.b) {
            *s = tanh(*s + b);
            *s1 = 1.0 - *s * *s;
        }
    }
    // ∇N = (S1 diag(a)) W.
    let scaled: Vec<f64> = s1
        .chunks(m)
        .flat_map(|row| row.iter().zip(&net.a).map(|(v, a)| v * a))
        .collect();
    let mut p = vec![0.0; n * d];
    gemm_into(
        &mut p,
        (n, d, m),
        Strided::row_major(&scaled, m),
        Strided::row_major(&net.w, d),
        false,
    )?;
    let mut r = vec![0.0; n];
    let mut q = vec![0.0; n * d];
    let mut energy = 0.0;
    for i in 0..n {
        let u = net.c
            + act[i * m..(i + 1) * m]
                .iter()
                .zip(&net.a)
                .map(|(s, a)| s * a)
                .sum::<f64>();
        let (e, ri) = pointwise(i, u, &p[i * d..(i + 1) * d], &mut q[i * d..(i + 1) * d]);
        energy += e;
        r[i] = ri;
    }
    // T = Q Wᵀ; α = r S1 + S2 T with S2 = −2 S S1.
    let mut t = vec![0.0; n * m];
    gemm_into(
        &mut t,
        (n, m, d),
        Strided::row_major(&q, d),
        Strided::row_major(&net.w, d).t(),
        false,
    )?;
    let mut col = vec![0.0; m];
    for (((&ri, srow), s1row), trow) in r
        .iter()
        .zip(act.chunks(m))
        .zip(s1.chunks(m))
        .zip(t.chunks_mut(m))
    {
        for ((((&sv, &s1v), tv), ga), c) in srow
            .iter()
            .zip(s1row)
            .zip(trow.iter_mut())
            .zip(g.a.iter_mut())
            .zip(col.iter_mut())
        {
            *ga += ri * sv + s1v * *tv;
            let alpha = ri * s1v - 2.0 * sv * s1v * *tv;
            *c += alpha;
            *tv = alpha;
        }
        g.c += ri;
    }
    // ∂/∂W = diag(a) (αᵀ X + S1ᵀ Q).
    let mut gw = vec![0.0; m * d];
    gemm_into(
        &mut gw,
        (m, d, n),
        Strided::row_major(&t, m).t(),
        Strided::row_major(xs, d),
        false,
    )?;
    gemm_into(
        &mut gw,
        (m, d, n),
        Strided::row_major(&s1, m).t(),
        Strided::row_major(&q, d),
        true,
    )?;
    for j in 0..m {
        g.b[j] += net.a[j] * col[j];
        for l in 0..d {
            g.w[j * d + l] += net.a[j] * gw[j * d + l];
        }
    }
    Ok(energy)
}

/// Ê(θ) and its parameter gradient on interior points `x` (row-major, d per point) and boundary points `y`.
pub fn energy_and_gradient(
    net: &TwoLayer,
    problem: &Problem,
    boundary: Boundary,
    x: &[f64],
    y: &BoundaryPoints,
) -> Result<(f64, Gradient)> {
    let d = net.d;
    let n = (x.len() / d).max(1) as f64;
    let lag = problem.lagrangian;
    let interior: Vec<Result<(f64, Gradient)>> = x
        .par_chunks(CHUNK * d)
        .map(|xs| {
            let mut g = Gradient::zeros(d, net.width);
            let (mut p, mut gphi) = (vec![0.0; d], vec![0.0; d]);
            let mut scratch = Scratch::new(d);
            let e = chunk_pass(net, xs, &mut g, |i, nv, np, q| {
                let xi = &xs[i * d..(i + 1) * d];
                let f = problem.source_with(xi, &mut scratch);
                let (u, phi) = if boundary == Boundary::Ansatz {
                    // u = φN, ∇u = N∇φ + φ∇N.
                    let phi = ansatz_factor(xi, &mut gphi);
                    p.iter_mut()
                        .zip(np.iter().zip(&gphi))
                        .for_each(|(p, (dn, dphi))| *p = nv * dphi + phi * dn);
                    (phi * nv, phi)
                } else {
                    p.copy_from_slice(np);
                    (nv, 1.0)
                };
                let e = problem.density(xi, u, &p, f);
                let r = (lag.du(u) - f) / n;
                lag.dp(&p, q);
                q.iter_mut().for_each(|v| *v /= n);
                if boundary == Boundary::Ansatz {
                    // The chain rule moves (r, q) to N's (rφ + q·∇φ, φq).
                    let r2 = r * phi + q.iter().zip(&gphi).map(|(a, b)| a * b).sum::<f64>();
                    q.iter_mut().for_each(|v| *v *= phi);
                    (e / n, r2)
                } else {
                    (e / n, r)
                }
            })?;
            Ok((e, g))
        })
        .collect();
    let mut g = Gradient::zeros(d, net.width);
    let mut energy = 0.0;
    for part in interior {
        let (e, part) = part?;
        energy += e;
        g.add(&part);
    }
    if let Boundary::Penalty(beta) = boundary {
        // β ∫_∂Ω (u − g)² dS: the boundary's area 2d times the mean over its points.
        let scale = (2 * d) as f64 / (y.face.len().max(1)) as f64;
        let parts: Vec<Result<(f64, Gradient)>> =
            y.x.par_chunks(CHUNK * d)
                .zip(y.face.par_chunks(CHUNK))
                .map(|(ys, faces)| {
                    let mut g = Gradient::zeros(d, net.width);
                    let e = chunk_pass(net, ys, &mut g, |i, u, _, q| {
                        q.iter_mut().for_each(|v| *v = 0.0);
                        let diff = u - problem.robin_data(&ys[i * d..(i + 1) * d], faces[i], beta);
                        (beta * scale * diff * diff, 2.0 * beta * scale * diff)
                    })?;
                    Ok((e, g))
                })
                .collect();
        for part in parts {
            let (e, part) = part?;
            energy += e;
            g.add(&part);
        }
    }
    Ok((energy, g))
}

/// `n` uniform points of the cube.
pub fn interior_points(d: usize, n: usize, rng: &mut Rng) -> Vec<f64> {
    (0..n * d).map(|_| rng.gen::<f64>()).collect()
}

/// Points of the cube's boundary with their faces (face 2i + s is x_i = s).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoundaryPoints {
    pub x: Vec<f64>,
    pub face: Vec<usize>,
}

/// `n` uniform points of the cube's boundary (a face chosen uniformly, then a uniform point on it).
pub fn boundary_points(d: usize, n: usize, rng: &mut Rng) -> BoundaryPoints {
    let mut x = interior_points(d, n, rng);
    let mut face = Vec::with_capacity(n);
    for p in x.chunks_mut(d) {
        let f = rng.gen_range(0..2 * d);
        p[f / 2] = (f % 2) as f64;
        face.push(f);
    }
    BoundaryPoints { x, face }
}

/// Relative L2 and H1-seminorm errors against u* on the points `x`.
pub fn errors(net: &TwoLayer, problem: &Problem, boundary: Boundary, x: &[f64]) -> (f64, f64) {
    let d = net.d;
    let sums: Vec<[f64; 4]> = x
        .par_chunks(CHUNK * d)
        .map(|xs| {
            let (mut p, mut g) = (vec![0.0; d], vec![0.0; d]);
            let mut s = [0.0; 4];
            for xi in xs.chunks(d) {
                let u = model(net, boundary, xi, &mut p);
                let ue = problem.exact(xi, &mut g);
                s[0] += (u - ue) * (u - ue);
                s[1] += ue * ue;
                s[2] += p
                    .iter()
                    .zip(&g)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>();
                s[3] += g.iter().map(|b| b * b).sum::<f64>();
            }
            s
        })
        .collect();
    let s = sums.iter().fold([0.0; 4], |mut acc, v| {
        acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        acc
    });
    ((s[0] / s[1]).sqrt(), (s[2] / s[3]).sqrt())
}

/// A Deep Ritz run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RitzConfig {
    pub width: usize,
    pub boundary: Boundary,
    /// Interior and boundary points per step (fresh each step).
    pub points: usize,
    pub boundary_points: usize,
    /// The hidden weights' initial scale ([`TwoLayer::init`]).
    pub init_scale: f64,
    pub steps: usize,
    pub optimizer: String,
    /// The learning-rate schedule over `steps` ([`crate::schedule::from_spec`]).
    pub schedule: String,
    /// Points of the fixed test set the errors are measured on.
    pub test_points: usize,
    pub seed: u64,
}

impl Default for RitzConfig {
    fn default() -> Self {
        RitzConfig {
            width: 64,
            boundary: Boundary::Penalty(10.0),
            points: 1024,
            boundary_points: 256,
            init_scale: 4.0,
            steps: 4000,
            optimizer: "adam:lr=1e-2".into(),
            schedule: "cosine".into(),
            test_points: 8192,
            seed: 0,
        }
    }
}

/// The Ritz trainer: the network's parameters as the optimizer sees them (`w`, `b`, `a`, `c`), the optimizer and
/// the step count (which also indexes the points drawn).
pub struct Ritz {
    pub problem: Problem,
    pub cfg: RitzConfig,
    params: Vec<Param>,
    pub opt: Box<dyn Optimizer>,
    schedule: Box<dyn Schedule>,
    pub step: usize,
    test: Vec<f64>,
}

/// The names of the parameters, in order.
pub const NAMES: [&str; 4] = ["w", "b", "a", "c"];

impl Ritz {
    pub fn new(problem: Problem, cfg: RitzConfig) -> Result<Self> {
        if cfg.points == 0 || cfg.test_points == 0 {
            return Err(Error::invalid(
                "Ritz: points and test points must be at least 1",
            ));
        }
        if cfg.boundary == Boundary::Ansatz && !problem.solution.zero_on_boundary() {
            return Err(Error::invalid(format!(
                "the ansatz imposes u = 0 on the boundary, which the {} solution does not satisfy: use --boundary penalty",
                problem.solution.name()
            )));
        }
        if matches!(cfg.boundary, Boundary::Penalty(_)) && cfg.boundary_points == 0 {
            return Err(Error::invalid(
                "the penalty needs at least 1 boundary point",
            ));
        }
        let d = problem.d;
        let per_point = 8.0 * d as f64;
        crate::memory::check(
            "the Ritz points",
            per_point * (cfg.points + cfg.boundary_points + cfg.test_points) as f64
                + 8.0 * (cfg.width as f64) * (d as f64 + 2.0) * 8.0,
            "lower --points, --test-points or --widths",
        )?;
        let net = TwoLayer::init(d, cfg.width, cfg.init_scale, cfg.seed)?;
        let dev = Device::Cpu;
        let params = [
            (net.w.clone(), vec![cfg.width, d]),
            (net.b.clone(), vec![cfg.width]),
            (net.a.clone(), vec![cfg.width]),
            (vec![net.c], vec![1]),
        ]
        .into_iter()
        .zip(NAMES)
        .map(|((v, shape), name)| {
            Ok(Param {
                name: name.into(),
                var: Var::from_tensor(&Tensor::from_vec(v, shape, &dev)?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let test = interior_points(
            d,
            cfg.test_points,
            &mut rng_for(cfg.seed, Stream::Data, u64::MAX),
        );
        Ok(Ritz {
            opt: from_spec(&cfg.optimizer)?,
            schedule: crate::schedule::from_spec(&cfg.schedule, cfg.steps as u64)?,
            problem,
            cfg,
            params,
            step: 0,
            test,
        })
    }

    /// The network as it stands.
    pub fn net(&self) -> Result<TwoLayer> {
        let v = |i: usize| -> Result<Vec<f64>> {
            Ok(self.params[i].tensor().flatten_all()?.to_vec1::<f64>()?)
        };
        Ok(TwoLayer {
            d: self.problem.d,
            width: self.cfg.width,
            w: v(0)?,
            b: v(1)?,
            a: v(2)?,
            c: v(3)?[0],
        })
    }

    /// One optimizer step on fresh points; returns the batch energy Ê before the step.
    pub fn step(&mut self) -> Result<f64> {
        let d = self.problem.d;
        let mut rng = rng_for(self.cfg.seed, Stream::Data, self.step as u64);
        let x = interior_points(d, self.cfg.points, &mut rng);
        let y = if matches!(self.cfg.boundary, Boundary::Penalty(_)) {
            boundary_points(d, self.cfg.boundary_points, &mut rng)
        } else {
            BoundaryPoints::default()
        };
        self.opt
            .apply_schedule("lr", self.schedule.factor(self.step as u64))?;
        let net = self.net()?;
        let (e, g) = energy_and_gradient(&net, &self.problem, self.cfg.boundary, &x, &y)?;
        if !e.is_finite() || g.w.iter().chain(&g.a).chain(&g.b).any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "Ritz: the energy or its gradient became NaN or infinite at step {}; lower the learning rate",
                self.step
            )));
        }
        let dev = Device::Cpu;
        let tensors = vec![
            Tensor::from_vec(g.w, (self.cfg.width, d), &dev)?,
            Tensor::from_vec(g.b, self.cfg.width, &dev)?,
            Tensor::from_vec(g.a, self.cfg.width, &dev)?,
            Tensor::from_vec(vec![g.c], 1, &dev)?,
        ];
        self.opt
            .step(&self.params, &grads_for(&self.params, &tensors)?)?;
        self.step += 1;
        Ok(e)
    }

    /// Relative L2 and H1 errors on the fixed test points.
    pub fn errors(&self) -> Result<(f64, f64)> {
        Ok(errors(
            &self.net()?,
            &self.problem,
            self.cfg.boundary,
            &self.test,
        ))
    }

    /// Saves the parameters and optimizer state.
    pub fn save(&self, w: &mut Writer) -> Result<()> {
        w.params("model", &self.params)?;
        w.optimizer("optimizer", self.opt.as_ref(), &self.params)
    }

    /// Restores a checkpoint written after `r.step` steps.
    pub fn load(&mut self, r: &Reader) -> Result<()> {
        r.load_params("model", &self.params)?;
        self.opt = r.optimizer("optimizer", &self.params, r.step)?;
        self.step = r.step as usize;
        Ok(())
    }
}

/// Standard normal draws for the tests.
#[cfg(test)]
fn gaussian(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rng_for(seed, Stream::Data, 0);
    let mut g = crate::rng::Normals::default();
    (0..n).map(|_| g.next(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pde::variational::{Lagrangian, Solution};

    fn perturbed(net: &TwoLayer, which: usize, i: usize, e: f64) -> TwoLayer {
        let mut n = net.clone();
        match which {
            0 => n.w[i] += e,
            1 => n.b[i] += e,
            2 => n.a[i] += e,
            _ => n.c += e,
        }
        n
    }

    #[test]
    fn the_hand_written_gradient_matches_finite_differences() {
        let d = 3;
        for (lag, sol, boundary) in [
            (
                Lagrangian::Quartic { gamma: 1.0 },
                Solution::Additive,
                Boundary::Penalty(10.0),
            ),
            (
                Lagrangian::PLaplace { q: 3.0, kappa: 0.5 },
                Solution::Product,
                Boundary::Ansatz,
            ),
            (
                Lagrangian::PLaplace { q: 4.0, kappa: 1.0 },
                Solution::Product,
                Boundary::Penalty(5.0),
            ),
        ] {
            let pb = Problem::new(d, lag, sol).unwrap();
            let mut net = TwoLayer::init(d, 5, 2.0, 3).unwrap();
            net.c = 0.2;
            let noise = gaussian(net.width, 1);
            net.a.iter_mut().zip(&noise).for_each(|(a, z)| *a += z);
            let mut rng = rng_for(4, Stream::Data, 0);
            let x = interior_points(d, 70, &mut rng);
            let y = boundary_points(d, 20, &mut rng);
            let (_, g) = energy_and_gradient(&net, &pb, boundary, &x, &y).unwrap();
            let e = 1e-6;
            let fd = |which, i| {
                let hi = energy_and_gradient(&perturbed(&net, which, i, e), &pb, boundary, &x, &y)
                    .unwrap()
                    .0;
                let lo = energy_and_gradient(&perturbed(&net, which, i, -e), &pb, boundary, &x, &y)
                    .unwrap()
                    .0;
                (hi - lo) / (2.0 * e)
            };
            for (which, got) in [(0, &g.w), (1, &g.b), (2, &g.a), (3, &vec![g.c])] {
                for (i, v) in got.iter().enumerate() {
                    let want = fd(which, i);
                    assert!(
                        (v - want).abs() < 1e-6 * want.abs().max(1.0),
                        "{lag:?} {boundary:?} param {which}[{i}]: {v} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_vectorizable_tanh_matches_libm() {
        for i in -4000..=4000 {
            let z = i as f64 * 0.005 + 1e-3;
            assert!((tanh(z) - z.tanh()).abs() < 4e-16, "{z}");
        }
        assert_eq!(tanh(800.0), 1.0);
        assert_eq!(tanh(-800.0), -1.0);
        assert_eq!(tanh(0.0), 0.0);
    }

    #[test]
    fn the_ansatz_vanishes_on_the_boundary() {
        let net = TwoLayer::init(2, 4, 1.0, 0).unwrap();
        let mut g = vec![0.0; 2];
        assert_eq!(model(&net, Boundary::Ansatz, &[0.0, 0.3], &mut g), 0.0);
        assert_eq!(model(&net, Boundary::Ansatz, &[0.7, 1.0], &mut g), 0.0);
        let y = boundary_points(3, 50, &mut rng_for(0, Stream::Data, 0));
        assert!(y
            .x
            .chunks(3)
            .zip(&y.face)
            .all(|(p, &f)| p[f / 2] == (f % 2) as f64));
    }
}
