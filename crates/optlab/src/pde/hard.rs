//! P08's hard-constraint layer on 1-D Fisher–KPP (periodic in x): a basis network φ(x, t) ∈ R^K and, per expert, the
//! combination weights w* = argmin_w ½‖r(w)‖² of the PDE residual u_t − ν u_xx − ρ u(1 − u) and the initial condition
//! u − u₀ on sampled points, for u = Σₖ wₖ φₖ (official code: `HardConstraintLayer`, Levenberg–Marquardt, w₀ = 0;
//! an MLP on (sin 2πx, cos 2πx, t) stands in for the FNO here). The mixture of experts splits x into equal
//! intervals, each with its own weights solved on its own points ([`super::lm::lm_batch`], in parallel); the soft
//! baseline learns w as a parameter under the same physics loss.
//!
//! The network's derivatives in x and t come forward-mode with the values (a "jet" through each layer), so the
//! residual stays a first-order graph in the network's parameters.

use super::lm::{lm_batch, LmOptions, ResidualFn};
use crate::rng::{normal, rng_for, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use std::f64::consts::TAU;
use std::sync::Arc;

/// Values and derivatives at N points, each N × K.
pub struct Jet {
    pub v: Tensor,
    pub x: Tensor,
    pub xx: Tensor,
    pub t: Tensor,
}

/// A tanh MLP from (sin 2πx, cos 2πx, t) to K basis functions.
pub struct BasisNet {
    layers: Vec<(Var, Var)>,
}

impl BasisNet {
    /// `depth` hidden layers of `width`, K outputs, Glorot-normal weights from `seed`, f64.
    pub fn new(width: usize, depth: usize, k: usize, seed: u64) -> Result<Self> {
        if width == 0 || depth == 0 || k == 0 || width > 4096 || k > 1024 {
            return Err(Error::invalid(format!(
                "basis network: width {width}, depth {depth} and K {k} must be positive (width ≤ 4096, K ≤ 1024)"
            )));
        }
        let mut rng = rng_for(seed, Stream::Init, 8);
        let mut sizes = vec![3];
        sizes.extend(std::iter::repeat_n(width, depth));
        sizes.push(k);
        let layers = sizes
            .windows(2)
            .map(|s| {
                let scale = (2.0 / (s[0] + s[1]) as f64).sqrt();
                let w: Vec<f64> = (0..s[0] * s[1]).map(|_| scale * normal(&mut rng)).collect();
                Ok((
                    Var::from_vec(w, (s[0], s[1]), &Device::Cpu)?,
                    Var::zeros(s[1], DType::F64, &Device::Cpu)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BasisNet { layers })
    }

    pub fn vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    pub fn k(&self) -> usize {
        self.layers.last().map_or(0, |(w, _)| w.dims()[1])
    }

    /// φ and its derivatives at `pts` (N × 2: x, t).
    pub fn jet(&self, pts: &Tensor) -> Result<Jet> {
        let x = pts.narrow(1, 0, 1)?.affine(TAU, 0.0)?;
        let t = pts.narrow(1, 1, 1)?;
        let (s, c) = (x.sin()?, x.cos()?);
        let zero = t.zeros_like()?;
        let one = t.ones_like()?;
        let mut v = Tensor::cat(&[&s, &c, &t], 1)?;
        let mut dx = Tensor::cat(&[&c.affine(TAU, 0.0)?, &s.affine(-TAU, 0.0)?, &zero], 1)?;
        let mut dxx = Tensor::cat(
            &[
                &s.affine(-TAU * TAU, 0.0)?,
                &c.affine(-TAU * TAU, 0.0)?,
                &zero,
            ],
            1,
        )?;
        let mut dt = Tensor::cat(&[&zero, &zero, &one], 1)?;
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            let lin = |h: &Tensor| crate::nn::matmul::matmul(h, w.as_tensor());
            let z = lin(&v)?.broadcast_add(b.as_tensor())?;
            let (zx, zxx, zt) = (lin(&dx)?, lin(&dxx)?, lin(&dt)?);
            if i == last {
                (v, dx, dxx, dt) = (z, zx, zxx, zt);
                break;
            }
            let a = z.tanh()?;
            let slope = a.sqr()?.affine(-1.0, 1.0)?; // 1 − a²
            dx = slope.mul(&zx)?;
            dt = slope.mul(&zt)?;
            // (tanh z)'' = −2 a (1 − a²): a_xx = s z_xx − 2 a s z_x²
            dxx = slope
                .mul(&zxx)?
                .sub(&a.mul(&slope)?.mul(&zx.sqr()?)?.affine(2.0, 0.0)?)?;
            v = a;
        }
        Ok(Jet {
            v,
            x: dx,
            xx: dxx,
            t: dt,
        })
    }
}

/// Fisher–KPP u_t = ν u_xx + ρ u(1 − u), periodic on [0, 1], u(x, 0) = u₀(x).
#[derive(Clone, Copy, Debug)]
pub struct Fisher {
    pub nu: f64,
    pub rho: f64,
}

impl Fisher {
    /// The initial condition of the experiments: 0.5 + 0.4 sin(2πx).
    pub fn u0(x: f64) -> f64 {
        0.5 + 0.4 * (TAU * x).sin()
    }

    /// The PDE residual u_t − ν u_xx − ρ u(1 − u) for u = Φ w (w: K × 1 or K).
    pub fn residual(&self, jet: &Jet, w: &Tensor) -> Result<Tensor> {
        let w = if w.rank() == 1 {
            w.unsqueeze(1)?
        } else {
            w.clone()
        };
        let u = jet.v.matmul(&w)?;
        let ut = jet.t.matmul(&w)?;
        let uxx = jet.xx.matmul(&w)?;
        Ok(ut
            .sub(&uxx.affine(self.nu, 0.0)?)?
            .sub(&u.mul(&u.affine(-1.0, 1.0)?)?.affine(self.rho, 0.0)?)?
            .squeeze(1)?)
    }
}

/// The hard-constraint residual of one expert: its constraint points' jets stacked as θ = [Φ; Φ_t; Φ_xx; Φ₀]
/// (rows: interior points ×3, then initial points), r = (PDE residual; u(·, 0) − u₀).
fn expert_residual(eq: Fisher, interior: usize, u0: Vec<f64>) -> ResidualFn {
    Arc::new(move |w: &Tensor, theta: &Tensor| {
        let jet = Jet {
            v: theta.narrow(0, 0, interior)?,
            t: theta.narrow(0, interior, interior)?,
            xx: theta.narrow(0, 2 * interior, interior)?,
            x: theta.narrow(0, 0, interior)?, // unused by the residual
        };
        let pde = eq.residual(&jet, w)?;
        let init = theta.narrow(0, 3 * interior, u0.len())?;
        let target = Tensor::from_slice(&u0, u0.len(), w.device())?;
        let ic = init.matmul(&w.unsqueeze(1)?)?.squeeze(1)?.sub(&target)?;
        Ok(Tensor::cat(&[&pde, &ic], 0)?)
    })
}

/// Which expert owns x ∈ [0, 1) when the interval is split in `experts` equal parts.
pub fn expert_of(x: f64, experts: usize) -> usize {
    ((x.rem_euclid(1.0) * experts as f64) as usize).min(experts - 1)
}

/// The hard-constrained model: a basis network and the experts' LM solves.
pub struct HardModel {
    pub net: BasisNet,
    pub eq: Fisher,
    pub experts: usize,
    pub lm: LmOptions,
}

impl HardModel {
    /// Solves every expert's weights on its share of `interior` (N × 2) and `initial` (x values) points; returns
    /// one weight node per expert (differentiable in the network).
    pub fn weights(&self, interior: &[[f64; 2]], initial: &[f64]) -> Result<Vec<Tensor>> {
        let k = self.net.k();
        let mut problems = Vec::with_capacity(self.experts);
        for e in 0..self.experts {
            let mine: Vec<f64> = interior
                .iter()
                .filter(|p| expert_of(p[0], self.experts) == e)
                .flat_map(|p| [p[0], p[1]])
                .collect();
            let init: Vec<f64> = initial
                .iter()
                .copied()
                .filter(|&x| expert_of(x, self.experts) == e)
                .collect();
            let n = mine.len() / 2;
            if n == 0 || init.is_empty() {
                return Err(Error::invalid(format!(
                    "expert {e} of {} has no constraint points: sample more points",
                    self.experts
                )));
            }
            let jet = self
                .net
                .jet(&Tensor::from_vec(mine, (n, 2), &Device::Cpu)?)?;
            let pts0: Vec<f64> = init.iter().flat_map(|&x| [x, 0.0]).collect();
            let jet0 = self
                .net
                .jet(&Tensor::from_vec(pts0, (init.len(), 2), &Device::Cpu)?)?;
            let theta = Tensor::cat(&[&jet.v, &jet.t, &jet.xx, &jet0.v], 0)?;
            let u0: Vec<f64> = init.iter().map(|&x| Fisher::u0(x)).collect();
            problems.push((
                expert_residual(self.eq, n, u0),
                Tensor::zeros(k, DType::F64, &Device::Cpu)?,
                theta,
            ));
        }
        Ok(lm_batch(&problems, &self.lm)?
            .into_iter()
            .map(|(w, _)| w)
            .collect())
    }

    /// u at `pts` (N × 2), each point through its expert's weights; also the PDE residual there.
    pub fn field(&self, weights: &[Tensor], pts: &[[f64; 2]]) -> Result<(Tensor, Tensor)> {
        let (mut us, mut rs) = (Vec::new(), Vec::new());
        for (e, w) in weights.iter().enumerate() {
            let mine: Vec<f64> = pts
                .iter()
                .filter(|p| expert_of(p[0], self.experts) == e)
                .flat_map(|p| [p[0], p[1]])
                .collect();
            if mine.is_empty() {
                continue;
            }
            let n = mine.len() / 2;
            let jet = self
                .net
                .jet(&Tensor::from_vec(mine, (n, 2), &Device::Cpu)?)?;
            us.push(jet.v.matmul(&w.unsqueeze(1)?)?.squeeze(1)?);
            rs.push(self.eq.residual(&jet, w)?);
        }
        Ok((Tensor::cat(&us, 0)?, Tensor::cat(&rs, 0)?))
    }
}

/// How the combination weights are found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Constraint {
    /// Learned as parameters under the physics loss (a PINN with the same basis network).
    Soft,
    /// Solved per step by LM on sampled points, by each of `experts` experts on its interval of x.
    Hard { experts: usize },
}

/// A training run of the Fisher–KPP experiment.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub constraint: Constraint,
    pub eq: Fisher,
    pub t_end: f64,
    /// Basis functions K, network width and hidden layers.
    pub k: usize,
    pub width: usize,
    pub depth: usize,
    pub steps: usize,
    pub lr: f64,
    /// Constraint points per step (hard): interior and initial.
    pub interior: usize,
    pub initial: usize,
    /// Fresh points per step for the physics loss: interior and initial.
    pub loss_points: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            constraint: Constraint::Hard { experts: 1 },
            eq: Fisher { nu: 0.01, rho: 1.0 },
            t_end: 1.0,
            k: 16,
            width: 32,
            depth: 2,
            steps: 200,
            lr: 1e-3,
            interior: 256,
            initial: 64,
            loss_points: 256,
            seed: 0,
        }
    }
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// ‖u − u_ref‖/‖u_ref‖ on the [`GRID`] × [`GRID`] grid of (x, t), against the finite-difference reference.
    pub rel_l2: f64,
    /// RMS of the PDE residual at 1000 held-out points.
    pub residual_rms: f64,
    pub seconds_per_step: f64,
    /// The physics loss per step.
    pub curve: Vec<f64>,
    /// The model and the reference on the grid, row-major with rows in t and columns in x.
    pub prediction: Vec<f64>,
    pub reference: Vec<f64>,
}

/// The evaluation grid's side: x_i = i/GRID, t_j = j t_end/(GRID − 1).
pub const GRID: usize = 32;

fn uniform_points(n: usize, t_end: f64, rng: &mut crate::rng::Rng) -> Vec<[f64; 2]> {
    use rand::Rng as _;
    (0..n)
        .map(|_| [rng.gen::<f64>(), t_end * rng.gen::<f64>()])
        .collect()
}

fn xs(n: usize, rng: &mut crate::rng::Rng) -> Vec<f64> {
    use rand::Rng as _;
    (0..n).map(|_| rng.gen::<f64>()).collect()
}

fn mean_sq(t: &Tensor) -> Result<Tensor> {
    Ok(t.sqr()?.mean_all()?)
}

/// Trains the basis network (Adam) on the physics loss mean r² + mean (u(·,0) − u₀)² at fresh points, with the
/// weights soft or hard; evaluates against the finite-difference reference.
pub fn train(cfg: &TrainConfig) -> Result<TrainOutcome> {
    crate::require_second_order()?;
    if cfg.steps == 0
        || cfg.interior == 0
        || cfg.initial == 0
        || cfg.loss_points == 0
        || !(cfg.lr > 0.0 && cfg.lr.is_finite())
        || !(cfg.t_end > 0.0 && cfg.t_end.is_finite())
    {
        return Err(Error::invalid(format!(
            "pde train: sizes, steps, lr and t_end must be positive ({cfg:?})"
        )));
    }
    if let Constraint::Hard { experts } = cfg.constraint {
        if experts == 0 || experts > cfg.initial || experts > cfg.interior {
            return Err(Error::invalid(format!(
                "pde train: {experts} experts need at least one constraint point each ({} interior, {} initial)",
                cfg.interior, cfg.initial
            )));
        }
    }
    let net = BasisNet::new(cfg.width, cfg.depth, cfg.k, cfg.seed)?;
    let soft_w = Var::zeros(cfg.k, DType::F64, &Device::Cpu)?;
    let mut vars = net.vars();
    if cfg.constraint == Constraint::Soft {
        vars.push(soft_w.clone());
    }
    let params: Vec<crate::nn::Param> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| crate::nn::Param {
            name: format!("p{i}"),
            var: v.clone(),
        })
        .collect();
    let mut opt = format!("adam:lr={}", cfg.lr)
        .parse::<crate::optim::OptimizerSpec>()?
        .build();
    let model = |experts: usize| HardModel {
        net: BasisNet {
            layers: net.layers.clone(),
        },
        eq: cfg.eq,
        experts,
        lm: LmOptions::default(),
    };
    let mut rng = rng_for(cfg.seed, Stream::Data, 8);
    let mut curve = Vec::with_capacity(cfg.steps.min(1 << 16));
    let start = std::time::Instant::now();
    for _ in 0..cfg.steps {
        let pts = uniform_points(cfg.loss_points, cfg.t_end, &mut rng);
        let x0 = xs(cfg.loss_points.min(cfg.initial.max(1)), &mut rng);
        let loss = match cfg.constraint {
            Constraint::Soft => {
                let flat: Vec<f64> = pts.iter().flat_map(|p| *p).collect();
                let jet = net.jet(&Tensor::from_vec(flat, (pts.len(), 2), &Device::Cpu)?)?;
                let r = cfg.eq.residual(&jet, soft_w.as_tensor())?;
                let p0: Vec<f64> = x0.iter().flat_map(|&x| [x, 0.0]).collect();
                let jet0 = net.jet(&Tensor::from_vec(p0, (x0.len(), 2), &Device::Cpu)?)?;
                let u0 = Tensor::from_vec(
                    x0.iter().map(|&x| Fisher::u0(x)).collect::<Vec<_>>(),
                    x0.len(),
                    &Device::Cpu,
                )?;
                let ic = jet0
                    .v
                    .matmul(&soft_w.as_tensor().unsqueeze(1)?)?
                    .squeeze(1)?
                    .sub(&u0)?;
                mean_sq(&r)?.add(&mean_sq(&ic)?)?
            }
            Constraint::Hard { experts } => {
                let m = model(experts);
                let cpts = uniform_points(cfg.interior, cfg.t_end, &mut rng);
                let cx0 = xs(cfg.initial, &mut rng);
                let w = m.weights(&cpts, &cx0)?;
                let (_, r) = m.field(&w, &pts)?;
                let p0: Vec<[f64; 2]> = x0.iter().map(|&x| [x, 0.0]).collect();
                let (u_init, _) = m.field(&w, &p0)?;
                // field() orders points by expert: compare against u₀ in the same order.
                let ordered: Vec<f64> = (0..experts)
                    .flat_map(|e| {
                        x0.iter()
                            .copied()
                            .filter(move |&x| expert_of(x, experts) == e)
                    })
                    .map(Fisher::u0)
                    .collect();
                let u0 = Tensor::from_vec(ordered, x0.len(), &Device::Cpu)?;
                mean_sq(&r)?.add(&mean_sq(&u_init.sub(&u0)?)?)?
            }
        };
        let value = loss.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Err(Error::NonFinite(format!(
                "pde train: the loss is {value}; lower the learning rate"
            )));
        }
        curve.push(value);
        let grads = loss.backward()?;
        opt.step(&params, &grads)?;
    }
    let seconds_per_step = start.elapsed().as_secs_f64() / cfg.steps as f64;
    // Evaluation: the final weights from fresh constraint points (hard) or the learned ones (soft).
    let weights = match cfg.constraint {
        Constraint::Soft => vec![soft_w.as_tensor().detach()],
        Constraint::Hard { experts } => {
            let cpts = uniform_points(cfg.interior, cfg.t_end, &mut rng);
            let cx0 = xs(cfg.initial, &mut rng);
            model(experts)
                .weights(&cpts, &cx0)?
                .iter()
                .map(|w| w.detach())
                .collect()
        }
    };
    let experts = weights.len();
    let eval_model = model(experts);
    let reference = super::fisher_kpp(cfg.eq.nu, cfg.eq.rho, 1.0, super::fd::Boundary::Periodic)
        .solve(Fisher::u0, 128, 400, cfg.t_end)?;
    // The evaluation grid, GRID × GRID, row j = time t_j, column i = x_i; points are visited expert by expert.
    let grid: Vec<[f64; 2]> = (0..GRID)
        .flat_map(|j| {
            (0..GRID).map(move |i| [i as f64 / GRID as f64, j as f64 / (GRID - 1) as f64])
        })
        .map(|[x, t]| [x, t * cfg.t_end])
        .collect();
    let grid_ref = &grid;
    let order: Vec<usize> = (0..experts)
        .flat_map(|e| (0..grid_ref.len()).filter(move |&k| expert_of(grid_ref[k][0], experts) == e))
        .collect();
    let ordered: Vec<[f64; 2]> = order.iter().map(|&k| grid[k]).collect();
    let (u, _) = eval_model.field(&weights, &ordered)?;
    let mut prediction = vec![0.0; grid.len()];
    for (k, v) in order.iter().zip(u.to_vec1::<f64>()?) {
        prediction[*k] = v;
    }
    let reference_grid: Vec<f64> = grid.iter().map(|p| reference.at(p[0], p[1])).collect();
    let (mut num, mut den) = (0.0, 0.0);
    for (v, r) in prediction.iter().zip(&reference_grid) {
        num += (v - r).powi(2);
        den += r * r;
    }
    let held = uniform_points(1000, cfg.t_end, &mut rng_for(cfg.seed, Stream::Data, 9));
    let (_, r) = eval_model.field(&weights, &held)?;
    let residual_rms = r.sqr()?.mean_all()?.to_scalar::<f64>()?.sqrt();
    Ok(TrainOutcome {
        rel_l2: (num / den).sqrt(),
        residual_rms,
        seconds_per_step,
        curve,
        prediction,
        reference: reference_grid,
    })
}
