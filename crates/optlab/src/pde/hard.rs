//! P08's hard-constraint layer: a basis network φ(x, τ) ∈ R^K and, per expert, the combination weights
//! w* = argmin_w ½‖r(w)‖² of the PDE residual, the initial condition and the boundary conditions on sampled points,
//! for u = Σₖ wₖ φₖ (official code: `HardConstraintLayer`, Levenberg–Marquardt, w₀ = 0 for Fisher–KPP and 1 for
//! diffusion–sorption). The mixture of experts splits x into equal intervals, each with its own weights solved on
//! its own points ([`super::lm::lm_batch`], in parallel); the soft baseline learns w as a parameter under the same
//! physics loss.
//!
//! Two basis networks ([`Basis`]):
//! - the paper's FNO ([`super::fno`]) on a fixed grid, derivatives by finite differences there; as in the official
//!   code the residual is taken on randomly sampled grid nodes and the initial and boundary conditions on all of
//!   theirs (the initial row; both ends for τ > 0);
//! - a tanh MLP of (x, τ), evaluated anywhere, its derivatives exact (forward mode); points sampled uniformly.
//!
//! Time is scaled to τ = t / T ∈ [0, 1] (T = 1 for Fisher–KPP, 500 for diffusion–sorption), so the residuals are
//! - Fisher–KPP (periodic in x): u_τ − T(ν u_xx + ρ u(1 − u));
//! - diffusion–sorption: R(u) u_τ − T D u_xx (multiplied through by the retardation R, u clamped at 1e-6 inside R),
//!   with u(0, τ) = 1 and u(1, τ) − D u_x(1, τ) = 0, u(x, 0) = 0.1.
//!
//! The MLP's derivatives in x and τ come forward-mode with the values (a "jet" through each layer), so the
//! residual stays a first-order graph in the network's parameters.

use super::fd::{Boundary, Field};
use super::fno::{Fno, FnoConfig, Grid, GridJet};
use super::lm::{lm_batch, LmOptions, ResidualFn};
use crate::rng::{normal, rng_for, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use std::f64::consts::TAU;
use std::sync::Arc;

/// Values and derivatives (in x, twice in x, in τ) at N points, each N × K.
pub struct Jet {
    pub v: Tensor,
    pub x: Tensor,
    pub xx: Tensor,
    pub t: Tensor,
}

/// A tanh MLP to K basis functions, from (sin 2πx, cos 2πx, τ) when periodic, else from (2x − 1, τ).
pub struct BasisNet {
    layers: Vec<(Var, Var)>,
    periodic: bool,
}

impl BasisNet {
    /// `depth` hidden layers of `width`, K outputs, Glorot-normal weights from `seed`, f64.
    pub fn new(width: usize, depth: usize, k: usize, seed: u64, periodic: bool) -> Result<Self> {
        if width == 0 || depth == 0 || k == 0 || width > 4096 || k > 1024 {
            return Err(Error::invalid(format!(
                "basis network: width {width}, depth {depth} and K {k} must be positive (width ≤ 4096, K ≤ 1024)"
            )));
        }
        let mut rng = rng_for(seed, Stream::Init, 8);
        let mut sizes = vec![if periodic { 3 } else { 2 }];
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
        Ok(BasisNet { layers, periodic })
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

    /// φ and its derivatives at `pts` (N × 2: x, τ).
    pub fn jet(&self, pts: &Tensor) -> Result<Jet> {
        let x = pts.narrow(1, 0, 1)?;
        let t = pts.narrow(1, 1, 1)?;
        let zero = t.zeros_like()?;
        let one = t.ones_like()?;
        let (mut v, mut dx, mut dxx, mut dt) = if self.periodic {
            let (s, c) = (x.affine(TAU, 0.0)?.sin()?, x.affine(TAU, 0.0)?.cos()?);
            (
                Tensor::cat(&[&s, &c, &t], 1)?,
                Tensor::cat(&[&c.affine(TAU, 0.0)?, &s.affine(-TAU, 0.0)?, &zero], 1)?,
                Tensor::cat(
                    &[
                        &s.affine(-TAU * TAU, 0.0)?,
                        &c.affine(-TAU * TAU, 0.0)?,
                        &zero,
                    ],
                    1,
                )?,
                Tensor::cat(&[&zero, &zero, &one], 1)?,
            )
        } else {
            (
                Tensor::cat(&[&x.affine(2.0, -1.0)?, &t], 1)?,
                Tensor::cat(&[&one.affine(2.0, 0.0)?, &zero], 1)?,
                Tensor::cat(&[&zero, &zero], 1)?,
                Tensor::cat(&[&zero, &one], 1)?,
            )
        };
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

/// The basis network of a hard (or soft) model.
pub enum Basis {
    /// A tanh MLP of (x, τ).
    Mlp(BasisNet),
    /// P08's FNO on its grid.
    Fno(Fno),
}

/// A basis evaluated once per step: the MLP's jets come at any point, the FNO's from its grid.
pub enum Evaluated<'a> {
    Mlp(&'a BasisNet),
    Grid(GridJet),
}

impl Evaluated<'_> {
    /// φ and its derivatives at `pts` (x, τ); grid nodes only for the FNO.
    pub fn jet(&self, pts: &[[f64; 2]]) -> Result<Jet> {
        match self {
            Evaluated::Mlp(net) => net.jet(&tensor_of(pts)?),
            Evaluated::Grid(g) => g.at(pts),
        }
    }
}

impl Basis {
    pub fn vars(&self) -> Vec<Var> {
        match self {
            Basis::Mlp(n) => n.vars(),
            Basis::Fno(f) => f.vars(),
        }
    }

    pub fn k(&self) -> usize {
        match self {
            Basis::Mlp(n) => n.k(),
            Basis::Fno(f) => f.config().k,
        }
    }

    pub fn evaluate(&self) -> Result<Evaluated<'_>> {
        Ok(match self {
            Basis::Mlp(n) => Evaluated::Mlp(n),
            Basis::Fno(f) => Evaluated::Grid(f.evaluate()?),
        })
    }

    /// Constraint or loss points, `n` interior ones shared evenly by `experts` equal intervals of x: uniform
    /// points (and `n0` initial ones, and `n0 / 2` on each end when not periodic) for the MLP; distinct grid nodes
    /// (of any row and column, as the official mask) and every initial and boundary node for the FNO.
    pub fn sample(
        &self,
        pde: &Pde,
        n: usize,
        n0: usize,
        experts: usize,
        rng: &mut crate::rng::Rng,
    ) -> Points {
        let Basis::Fno(f) = self else {
            return Points::sample(pde, n, n0, experts, rng);
        };
        let g = f.grid();
        let ends: Vec<f64> = if pde.periodic() {
            vec![]
        } else {
            (1..g.nt()).map(|j| g.point(j * g.nx())[1]).collect()
        };
        let interior = (0..experts)
            .flat_map(|e| {
                let share = n / experts + usize::from(e < n % experts);
                g.sample(share, |x| pde.owner(x, experts) == e, rng)
            })
            .collect();
        Points {
            interior,
            initial: (0..g.nx()).map(|i| g.point(i)[0]).collect(),
            left: ends.clone(),
            right: ends,
        }
    }
}

/// The equations of the experiments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pde {
    /// u_t = ν u_xx + ρ u(1 − u), periodic on [0, 1], u(x, 0) = 0.5 + 0.4 sin 2πx, t ∈ [0, 1].
    Fisher { nu: f64, rho: f64 },
    /// PDEBench's diffusion–sorption ([`super::diffusion_sorption`]), t ∈ [0, 500], u(x, 0) = 0.1.
    Sorption,
}

fn mv(a: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(a.matmul(&w.unsqueeze(1)?)?.squeeze(1)?)
}

impl Pde {
    pub fn periodic(&self) -> bool {
        matches!(self, Pde::Fisher { .. })
    }

    /// T: physical time = τ T.
    pub fn time_scale(&self) -> f64 {
        match self {
            Pde::Fisher { .. } => 1.0,
            Pde::Sorption => 500.0,
        }
    }

    pub fn u0(&self, x: f64) -> f64 {
        match self {
            Pde::Fisher { .. } => 0.5 + 0.4 * (TAU * x).sin(),
            Pde::Sorption => 0.1,
        }
    }

    /// The initial weights of the LM solves (the official code's: zeros, ones for diffusion–sorption).
    fn w0(&self) -> f64 {
        match self {
            Pde::Fisher { .. } => 0.0,
            Pde::Sorption => 1.0,
        }
    }

    /// The PDE residual in τ for u = Φ w (w of K entries).
    pub fn residual(&self, jet: &Jet, w: &Tensor) -> Result<Tensor> {
        let u = mv(&jet.v, w)?;
        let ut = mv(&jet.t, w)?;
        let uxx = mv(&jet.xx, w)?;
        let t = self.time_scale();
        Ok(match *self {
            Pde::Fisher { nu, rho } => ut
                .sub(&uxx.affine(t * nu, 0.0)?)?
                .sub(&u.mul(&u.affine(-1.0, 1.0)?)?.affine(t * rho, 0.0)?)?,
            Pde::Sorption => {
                let c = (1.0 - super::SORPTION_PHI) / super::SORPTION_PHI
                    * super::SORPTION_RHO_S
                    * super::SORPTION_K
                    * super::SORPTION_NF;
                let r = u
                    .clamp(1e-6, f64::MAX)?
                    .powf(super::SORPTION_NF - 1.0)?
                    .affine(c, 1.0)?;
                r.mul(&ut)?.sub(&uxx.affine(t * super::SORPTION_D, 0.0)?)?
            }
        })
    }

    /// The boundary residuals from the jets at x = 0 and x = 1 (either may be absent); none when periodic.
    fn boundary(&self, left: Option<&Jet>, right: Option<&Jet>, w: &Tensor) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        if let Pde::Sorption = self {
            if let Some(l) = left {
                out.push(mv(&l.v, w)?.affine(1.0, -1.0)?);
            }
            if let Some(r) = right {
                out.push(mv(&r.v, w)?.sub(&mv(&r.x, w)?.affine(super::SORPTION_D, 0.0)?)?);
            }
        }
        Ok(out)
    }

    /// The finite-difference reference over t ∈ [0, T].
    pub fn reference(&self) -> Result<Field> {
        match *self {
            Pde::Fisher { nu, rho } => super::fisher_kpp(nu, rho, 1.0, Boundary::Periodic).solve(
                |x| self.u0(x),
                128,
                400,
                1.0,
            ),
            Pde::Sorption => super::diffusion_sorption().solve(|x| self.u0(x), 201, 400, 500.0),
        }
    }

    /// The expert owning x when [0, 1] is split in `experts` equal intervals (x = 1 wraps to 0 when periodic);
    /// a grid node on an interval's left end belongs to it despite the rounding of i/n (the 1e-9).
    pub fn owner(&self, x: f64, experts: usize) -> usize {
        let x = if self.periodic() {
            x.rem_euclid(1.0)
        } else {
            x.clamp(0.0, 1.0)
        };
        ((x * experts as f64 + 1e-9) as usize).min(experts - 1)
    }
}

/// Constraint or loss points: interior (x, τ), initial x, and τ on the left and right ends (non-periodic only).
#[derive(Debug, Clone, Default)]
pub struct Points {
    pub interior: Vec<[f64; 2]>,
    pub initial: Vec<f64>,
    pub left: Vec<f64>,
    pub right: Vec<f64>,
}

impl Points {
    /// Uniform points: `n` interior, `n0` initial and, when not periodic, `n0 / 2` on each end; the k-th interior
    /// and initial points lie in the (k mod `experts`)-th of `experts` equal intervals of x, so every expert has
    /// its share.
    pub fn sample(
        pde: &Pde,
        n: usize,
        n0: usize,
        experts: usize,
        rng: &mut crate::rng::Rng,
    ) -> Self {
        use rand::Rng as _;
        let nb = if pde.periodic() { 0 } else { (n0 / 2).max(1) };
        let e = experts.max(1) as f64;
        let x = |k: usize, rng: &mut crate::rng::Rng| {
            ((k % experts.max(1)) as f64 + rng.gen::<f64>()) / e
        };
        Points {
            interior: (0..n).map(|k| [x(k, rng), rng.gen::<f64>()]).collect(),
            initial: (0..n0).map(|k| x(k, rng)).collect(),
            left: (0..nb).map(|_| rng.gen::<f64>()).collect(),
            right: (0..nb).map(|_| rng.gen::<f64>()).collect(),
        }
    }

    /// The share of expert `e`.
    fn of(&self, pde: &Pde, e: usize, experts: usize) -> Points {
        let mine = |x: f64| pde.owner(x, experts) == e;
        Points {
            interior: self
                .interior
                .iter()
                .copied()
                .filter(|p| mine(p[0]))
                .collect(),
            initial: self.initial.iter().copied().filter(|&x| mine(x)).collect(),
            left: if mine(0.0) { self.left.clone() } else { vec![] },
            right: if mine(1.0) {
                self.right.clone()
            } else {
                vec![]
            },
        }
    }
}

fn tensor_of(pts: &[[f64; 2]]) -> Result<Tensor> {
    let flat: Vec<f64> = pts.iter().flat_map(|p| *p).collect();
    Ok(Tensor::from_vec(flat, (pts.len(), 2), &Device::Cpu)?)
}

/// The jets an expert's residual needs, stacked into one θ (so the LM layer differentiates through all of them),
/// with the counts to unstack them.
struct Stacked {
    theta: Tensor,
    n: usize,
    n0: usize,
    nb: (usize, usize),
}

fn stack(net: &Evaluated, p: &Points) -> Result<Stacked> {
    let jet = net.jet(&p.interior)?;
    let init: Vec<[f64; 2]> = p.initial.iter().map(|&x| [x, 0.0]).collect();
    let mut parts = vec![jet.v, jet.t, jet.xx, net.jet(&init)?.v];
    if !p.left.is_empty() {
        let l: Vec<[f64; 2]> = p.left.iter().map(|&t| [0.0, t]).collect();
        parts.push(net.jet(&l)?.v);
    }
    if !p.right.is_empty() {
        let r: Vec<[f64; 2]> = p.right.iter().map(|&t| [1.0, t]).collect();
        let jr = net.jet(&r)?;
        parts.push(jr.v);
        parts.push(jr.x);
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok(Stacked {
        theta: Tensor::cat(&refs, 0)?,
        n: p.interior.len(),
        n0: p.initial.len(),
        nb: (p.left.len(), p.right.len()),
    })
}

/// r(w; θ) = (PDE residual; u(·, 0) − u₀; boundary residuals) for one expert's stacked jets.
fn expert_residual(pde: Pde, s: &Stacked, u0: Vec<f64>) -> ResidualFn {
    let (n, n0, (nl, nr)) = (s.n, s.n0, s.nb);
    Arc::new(move |w: &Tensor, theta: &Tensor| {
        let part = |start: usize, len: usize| theta.narrow(0, start, len);
        let jet = Jet {
            v: part(0, n)?,
            t: part(n, n)?,
            xx: part(2 * n, n)?,
            x: part(0, n)?, // unused by the residuals
        };
        let mut r = vec![pde.residual(&jet, w)?];
        let target = Tensor::from_slice(&u0, u0.len(), w.device())?;
        r.push(mv(&part(3 * n, n0)?, w)?.sub(&target)?);
        let at = 3 * n + n0;
        // Boundary jets carry what the conditions read: values (both ends) and x-derivatives (the right end).
        let side = |v: Tensor, x: Tensor| Jet {
            v: v.clone(),
            x,
            xx: v.clone(),
            t: v,
        };
        let left = if nl > 0 {
            let v = part(at, nl)?;
            Some(side(v.clone(), v))
        } else {
            None
        };
        let right = if nr > 0 {
            Some(side(part(at + nl, nr)?, part(at + nl + nr, nr)?))
        } else {
            None
        };
        r.extend(pde.boundary(left.as_ref(), right.as_ref(), w)?);
        let refs: Vec<&Tensor> = r.iter().collect();
        Ok(Tensor::cat(&refs, 0)?)
    })
}

/// The hard-constrained model: a basis network and the experts' LM solves.
pub struct HardModel {
    pub net: Basis,
    pub pde: Pde,
    pub experts: usize,
    pub lm: LmOptions,
}

impl HardModel {
    /// Solves every expert's weights on its share of the constraint points; one weight node per expert,
    /// differentiable in the network.
    pub fn weights(&self, basis: &Evaluated, pts: &Points) -> Result<Vec<Tensor>> {
        let k = self.net.k();
        let mut problems = Vec::with_capacity(self.experts);
        for e in 0..self.experts {
            let mine = pts.of(&self.pde, e, self.experts);
            if mine.interior.is_empty() || mine.initial.is_empty() {
                return Err(Error::invalid(format!(
                    "expert {e} of {} has no constraint points: sample more points",
                    self.experts
                )));
            }
            let s = stack(basis, &mine)?;
            let u0: Vec<f64> = mine.initial.iter().map(|&x| self.pde.u0(x)).collect();
            problems.push((
                expert_residual(self.pde, &s, u0),
                Tensor::full(self.pde.w0(), k, &Device::Cpu)?,
                s.theta,
            ));
        }
        Ok(lm_batch(&problems, &self.lm)?
            .into_iter()
            .map(|(w, _)| w)
            .collect())
    }

    /// The physics loss at `pts`: mean PDE residual² + mean initial residual² + mean boundary residual², with each
    /// point through its expert's weights (a single weight vector for the soft model).
    pub fn loss(&self, basis: &Evaluated, weights: &[Tensor], pts: &Points) -> Result<Tensor> {
        let (mut pde, mut ic, mut bc) = (Vec::new(), Vec::new(), Vec::new());
        for (e, w) in weights.iter().enumerate() {
            let mine = if weights.len() == 1 {
                pts.clone()
            } else {
                pts.of(&self.pde, e, weights.len())
            };
            if !mine.interior.is_empty() {
                pde.push(self.pde.residual(&basis.jet(&mine.interior)?, w)?);
            }
            if !mine.initial.is_empty() {
                let init: Vec<[f64; 2]> = mine.initial.iter().map(|&x| [x, 0.0]).collect();
                let u0: Vec<f64> = mine.initial.iter().map(|&x| self.pde.u0(x)).collect();
                let v = mv(&basis.jet(&init)?.v, w)?;
                ic.push(v.sub(&Tensor::from_vec(u0, mine.initial.len(), &Device::Cpu)?)?);
            }
            let side = |x: f64, ts: &[f64]| -> Result<Option<Jet>> {
                if ts.is_empty() {
                    return Ok(None);
                }
                let p: Vec<[f64; 2]> = ts.iter().map(|&t| [x, t]).collect();
                Ok(Some(basis.jet(&p)?))
            };
            let (l, r) = (side(0.0, &mine.left)?, side(1.0, &mine.right)?);
            bc.extend(self.pde.boundary(l.as_ref(), r.as_ref(), w)?);
        }
        let mean_sq = |parts: &[Tensor]| -> Result<Option<Tensor>> {
            if parts.is_empty() {
                return Ok(None);
            }
            let refs: Vec<&Tensor> = parts.iter().collect();
            Ok(Some(Tensor::cat(&refs, 0)?.sqr()?.mean_all()?))
        };
        let mut total = Tensor::new(0f64, &Device::Cpu)?;
        for term in [mean_sq(&pde)?, mean_sq(&ic)?, mean_sq(&bc)?]
            .into_iter()
            .flatten()
        {
            total = total.add(&term)?;
        }
        Ok(total)
    }

    /// u at `pts` (x, τ) in the order given, each point through its expert's weights; also the PDE residual there.
    pub fn field(
        &self,
        basis: &Evaluated,
        weights: &[Tensor],
        pts: &[[f64; 2]],
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let (mut u, mut r) = (vec![0.0; pts.len()], vec![0.0; pts.len()]);
        for (e, w) in weights.iter().enumerate() {
            let idx: Vec<usize> = (0..pts.len())
                .filter(|&i| weights.len() == 1 || self.pde.owner(pts[i][0], weights.len()) == e)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let mine: Vec<[f64; 2]> = idx.iter().map(|&i| pts[i]).collect();
            let jet = basis.jet(&mine)?;
            let (uv, rv): (Vec<f64>, Vec<f64>) = (
                mv(&jet.v, w)?.to_vec1()?,
                self.pde.residual(&jet, w)?.to_vec1()?,
            );
            for (j, &i) in idx.iter().enumerate() {
                u[i] = uv[j];
                r[i] = rv[j];
            }
        }
        Ok((u, r))
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

/// Which basis network a run trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BasisKind {
    /// A tanh MLP with `depth` hidden layers of `width`.
    Mlp,
    /// The paper's FNO: `width` channels, `depth` spectral blocks keeping `modes` modes in τ (per sign) and in x,
    /// a projection of 2 `width` channels, on a `grid` × `grid` grid of (τ, x).
    Fno { modes: usize, grid: usize },
}

/// A training run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub constraint: Constraint,
    pub pde: Pde,
    pub basis: BasisKind,
    /// Basis functions K, network width and hidden layers (spectral blocks for the FNO).
    pub k: usize,
    pub width: usize,
    pub depth: usize,
    pub steps: usize,
    pub lr: f64,
    /// Constraint points per step (hard): interior and initial (half as many on each end when not periodic; for
    /// the FNO every initial and boundary node instead).
    pub interior: usize,
    pub initial: usize,
    /// Fresh interior points per step for the physics loss (a quarter as many initial ones for the MLP; every
    /// initial and boundary node for the FNO).
    pub loss_points: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            constraint: Constraint::Hard { experts: 1 },
            pde: Pde::Fisher { nu: 0.01, rho: 1.0 },
            basis: BasisKind::Fno {
                modes: 8,
                grid: GRID,
            },
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
    /// ‖u − u_ref‖/‖u_ref‖ on the evaluation grid (`grid` × `grid` nodes of (x, t)), against the finite-difference
    /// reference.
    pub rel_l2: f64,
    /// RMS of the PDE residual (in τ) at 1000 fresh points: held out for the MLP, with its exact derivatives; for
    /// the FNO, 1000 of its grid nodes (all when fewer), which training also sampled, with its finite differences.
    pub residual_rms: f64,
    pub seconds_per_step: f64,
    /// The physics loss per step.
    pub curve: Vec<f64>,
    /// The side of the evaluation grid: [`GRID`] for the MLP, the FNO's own grid otherwise.
    pub grid: usize,
    /// The model and the reference on the grid, row-major with rows in t and columns in x.
    pub prediction: Vec<f64>,
    pub reference: Vec<f64>,
}

/// The MLP's evaluation grid side (and the FNO's default grid): x_i = i/GRID (periodic) or i/(GRID − 1),
/// t_j = j T/(GRID − 1).
pub const GRID: usize = 32;

fn check(cfg: &TrainConfig) -> Result<usize> {
    if cfg.steps == 0
        || cfg.interior == 0
        || cfg.initial == 0
        || cfg.loss_points == 0
        || !(cfg.lr > 0.0 && cfg.lr.is_finite())
    {
        return Err(Error::invalid(format!(
            "pde train: sizes, steps and lr must be positive ({cfg:?})"
        )));
    }
    if let Pde::Fisher { nu, rho } = cfg.pde {
        if !(nu > 0.0 && nu.is_finite() && rho.is_finite()) {
            return Err(Error::invalid(format!(
                "Fisher-KPP: ν = {nu} must be positive and ρ = {rho} finite"
            )));
        }
    }
    let experts = match cfg.constraint {
        Constraint::Soft => 1,
        Constraint::Hard { experts } => experts,
    };
    match cfg.basis {
        BasisKind::Mlp if experts == 0 || experts > cfg.initial || experts > cfg.interior => {
            return Err(Error::invalid(format!(
                "pde train: {experts} experts need at least one constraint point each ({} interior, {} initial)",
                cfg.interior, cfg.initial
            )));
        }
        BasisKind::Fno { grid, .. } => {
            let nodes = grid.saturating_mul(grid);
            if experts == 0 || experts >= grid || experts > cfg.interior {
                return Err(Error::invalid(format!(
                    "pde train: {experts} experts need a column of the FNO's {grid} × {grid} grid and a constraint \
                     point each (at most {} experts)",
                    grid.saturating_sub(1).min(cfg.interior)
                )));
            }
            if cfg.interior.max(cfg.loss_points) > nodes {
                return Err(Error::invalid(format!(
                    "pde train: the FNO's {grid} × {grid} grid has {nodes} nodes, fewer than the {} points asked \
                     per step: use a finer --grid or fewer points",
                    cfg.interior.max(cfg.loss_points)
                )));
            }
        }
        BasisKind::Mlp => {}
    }
    Ok(experts)
}

/// Trains the basis network (Adam) on the physics loss at fresh points, with the weights soft or hard; evaluates
/// against the finite-difference reference.
pub fn train(cfg: &TrainConfig) -> Result<TrainOutcome> {
    crate::require_second_order()?;
    let experts = check(cfg)?;
    let periodic = cfg.pde.periodic();
    let net = match cfg.basis {
        BasisKind::Mlp => Basis::Mlp(BasisNet::new(
            cfg.width, cfg.depth, cfg.k, cfg.seed, periodic,
        )?),
        BasisKind::Fno { modes, grid } => {
            let fno = FnoConfig {
                width: cfg.width,
                layers: cfg.depth,
                modes: (modes, modes),
                fc: 2 * cfg.width,
                k: cfg.k,
                grid: (grid, grid),
            };
            Basis::Fno(Fno::new(fno, periodic, &|x| cfg.pde.u0(x), cfg.seed)?)
        }
    };
    let soft_w = Var::from_tensor(&Tensor::full(
        cfg.pde.w0() / cfg.k as f64,
        cfg.k,
        &Device::Cpu,
    )?)?;
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
    let model = HardModel {
        net,
        pde: cfg.pde,
        experts,
        lm: LmOptions::default(),
    };
    let mut rng = rng_for(cfg.seed, Stream::Data, 8);
    let mut curve = Vec::with_capacity(cfg.steps.min(1 << 16));
    let weights_now = |basis: &Evaluated, rng: &mut crate::rng::Rng| -> Result<Vec<Tensor>> {
        match cfg.constraint {
            Constraint::Soft => Ok(vec![soft_w.as_tensor().clone()]),
            Constraint::Hard { .. } => model.weights(
                basis,
                &model
                    .net
                    .sample(&cfg.pde, cfg.interior, cfg.initial, experts, rng),
            ),
        }
    };
    let start = std::time::Instant::now();
    for _ in 0..cfg.steps {
        let basis = model.net.evaluate()?;
        let w = weights_now(&basis, &mut rng)?;
        let pts = model.net.sample(
            &cfg.pde,
            cfg.loss_points,
            (cfg.loss_points / 4).max(1),
            experts,
            &mut rng,
        );
        let loss = model.loss(&basis, &w, &pts)?;
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
    let basis = model.net.evaluate()?;
    let weights: Vec<Tensor> = weights_now(&basis, &mut rng)?
        .iter()
        .map(|w| w.detach())
        .collect();
    let reference = cfg.pde.reference()?;
    let t_end = cfg.pde.time_scale();
    let side = match cfg.basis {
        BasisKind::Mlp => GRID,
        BasisKind::Fno { grid, .. } => grid,
    };
    let eval = Grid::new(side, side, periodic)?;
    let grid: Vec<[f64; 2]> = (0..eval.nodes()).map(|r| eval.point(r)).collect();
    let (prediction, _) = model.field(&basis, &weights, &grid)?;
    let reference_grid: Vec<f64> = grid
        .iter()
        .map(|p| reference.at(p[0], p[1] * t_end))
        .collect();
    let (mut num, mut den) = (0.0, 0.0);
    for (v, r) in prediction.iter().zip(&reference_grid) {
        num += (v - r).powi(2);
        den += r * r;
    }
    let held_n = match cfg.basis {
        BasisKind::Mlp => 1000,
        BasisKind::Fno { grid, .. } => 1000.min(grid * grid),
    };
    let held = model.net.sample(
        &cfg.pde,
        held_n,
        1,
        experts,
        &mut rng_for(cfg.seed, Stream::Data, 9),
    );
    let (_, r) = model.field(&basis, &weights, &held.interior)?;
    let residual_rms = (r.iter().map(|v| v * v).sum::<f64>() / r.len() as f64).sqrt();
    Ok(TrainOutcome {
        rel_l2: (num / den).sqrt(),
        residual_rms,
        seconds_per_step,
        curve,
        grid: side,
        prediction,
        reference: reference_grid,
    })
}
