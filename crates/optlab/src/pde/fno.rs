//! P08's basis network: a 2-D Fourier neural operator over a fixed (τ, x) grid (official code: `FNO2D` and
//! `SpectralConv2d`, configs `fno2d-64-8m-hard-constraint*`), with the basis functions' derivatives by finite
//! differences on that grid as there (`fdm_first_order_derivative`).
//!
//! - Input channels per grid node: (τ, x, u₀(x)) as in the official `prepare_input`; on a periodic x the coordinate
//!   enters as (sin 2πx, cos 2πx) so that the basis is periodic too.
//! - Lifting `fc0`, then `layers` blocks h ← GELU(SpectralConv(h) + W h + b) (W a 1 × 1 convolution), then
//!   `fc1` (to `fc` channels) with GELU and `fc2` (to K) with GELU (`activate_last_layer: True`). GELU is jax's
//!   default, the tanh approximation.
//! - SpectralConv: rfft2 over (τ, x), the modes k_τ ∈ {0..m₁} ∪ {n_τ − m₁..n_τ} and k_x ∈ {0..m₂} multiplied by
//!   complex C × O weights (`weights1` for the low k_τ block, `weights2` for the high one), irfft2 back. The kept
//!   modes are few, so both transforms are dense real matrices (2M × P and P × 2M for M = 2 m₁ m₂ modes and
//!   P = n_τ n_x nodes) applied by matmul: the same numbers as the FFT, differentiable by the engine.
//! - Derivatives: central differences inside, one-sided at the ends (τ, and x when not periodic), and φ_xx as the
//!   difference of φ_x: the official stencils. On a periodic x the central difference wraps around (optlab's; the
//!   official experiments have no periodic case).
//!
//! One `width` serves every block, so the official config (lifting to 32 channels, then blocks of 64) is
//! approximated by a uniform width; the spectral weights' scale is then 1/√width, the official 1/√((C + O)/2).

use super::hard::Jet;
use crate::nn::Init;
use crate::rng::{rng_for, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng as _;
use std::f64::consts::TAU;

/// The network's sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FnoConfig {
    /// Hidden channels (the official config: 64).
    pub width: usize,
    /// Spectral blocks (5).
    pub layers: usize,
    /// Modes kept in τ (per sign) and in x (8 and 8).
    pub modes: (usize, usize),
    /// Channels of the projection `fc1` (128).
    pub fc: usize,
    /// Basis functions K (16).
    pub k: usize,
    /// Grid nodes in τ and in x.
    pub grid: (usize, usize),
}

/// The (τ, x) grid: τ_j = j/(n_τ − 1); x_i = i/n_x when periodic, i/(n_x − 1) otherwise. Node (j, i) is row
/// j n_x + i of every grid tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    nt: usize,
    nx: usize,
    periodic: bool,
}

impl Grid {
    /// An n_τ × n_x grid, each side at least 3.
    pub fn new(nt: usize, nx: usize, periodic: bool) -> Result<Self> {
        if nt < 3 || nx < 3 {
            return Err(Error::invalid(format!(
                "a grid needs at least 3 nodes on each side, not {nt} × {nx}"
            )));
        }
        Ok(Grid { nt, nx, periodic })
    }

    pub fn nt(&self) -> usize {
        self.nt
    }

    pub fn nx(&self) -> usize {
        self.nx
    }

    fn x_div(&self) -> f64 {
        (if self.periodic { self.nx } else { self.nx - 1 }) as f64
    }

    pub fn nodes(&self) -> usize {
        self.nt * self.nx
    }

    /// The (x, τ) of node `row`.
    pub fn point(&self, row: usize) -> [f64; 2] {
        let (j, i) = (row / self.nx, row % self.nx);
        [i as f64 / self.x_div(), j as f64 / (self.nt - 1) as f64]
    }

    /// The row of the node at (x, τ); an error for a point off the grid.
    pub fn row(&self, p: [f64; 2]) -> Result<usize> {
        let (fi, fj) = (p[0] * self.x_div(), p[1] * (self.nt - 1) as f64);
        let (i, j) = (fi.round(), fj.round());
        let i_max = if self.periodic { self.nx } else { self.nx - 1 } as f64;
        let on_grid = (fi - i).abs() <= 1e-6
            && (fj - j).abs() <= 1e-6
            && (0.0..=i_max).contains(&i)
            && j >= 0.0;
        if !on_grid {
            return Err(Error::invalid(format!(
                "the FNO basis is evaluated at its grid nodes only; (x, τ) = ({}, {}) is not one of its {} × {} nodes",
                p[0], p[1], self.nx, self.nt
            )));
        }
        let i = (i as usize) % self.nx; // x = 1 is x = 0 on a periodic grid
        let j = j as usize;
        if j >= self.nt {
            return Err(Error::invalid(format!("τ = {} is outside [0, 1]", p[1])));
        }
        Ok(j * self.nx + i)
    }

    /// `n` distinct random nodes, of all rows, in the columns whose x `mine` accepts, as (x, τ), in random order.
    pub fn sample(
        &self,
        n: usize,
        mine: impl Fn(f64) -> bool,
        rng: &mut crate::rng::Rng,
    ) -> Vec<[f64; 2]> {
        let columns: Vec<usize> = (0..self.nx).filter(|&i| mine(self.point(i)[0])).collect();
        let mut pool: Vec<usize> = (0..self.nt)
            .flat_map(|j| columns.iter().map(move |&i| j * self.nx + i))
            .collect();
        let n = n.min(pool.len());
        for k in 0..n {
            let pick = rng.gen_range(k..pool.len());
            pool.swap(k, pick);
        }
        pool[..n].iter().map(|&r| self.point(r)).collect()
    }
}

/// The truncated 2-D real DFT and its inverse as dense matrices.
struct Dft {
    /// 2M × P: rows 0..M give Re X_m = Σ_p h_p cos θ_mp, rows M..2M give Im X_m = −Σ_p h_p sin θ_mp.
    forward: Tensor,
    /// P × 2M: irfft2 of the kept modes (1/P, and 2 for k_x > 0 for the Hermitian half).
    inverse: Tensor,
    modes: usize,
}

impl Dft {
    fn new(grid: Grid, (m1, m2): (usize, usize)) -> Result<Self> {
        let (nt, nx) = (grid.nt, grid.nx);
        let kts: Vec<usize> = (0..m1).chain(nt - m1..nt).collect();
        let m = kts.len() * m2;
        let p = nt * nx;
        let (mut fwd, mut inv) = (vec![0.0; 2 * m * p], vec![0.0; p * 2 * m]);
        for (a, &kt) in kts.iter().enumerate() {
            for kx in 0..m2 {
                let mode = a * m2 + kx;
                let c = if kx == 0 { 1.0 } else { 2.0 } / p as f64;
                for t in 0..nt {
                    for x in 0..nx {
                        let theta = TAU
                            * (((kt * t) % nt) as f64 / nt as f64
                                + ((kx * x) % nx) as f64 / nx as f64);
                        let (s, co) = theta.sin_cos();
                        let node = t * nx + x;
                        fwd[mode * p + node] = co;
                        fwd[(m + mode) * p + node] = -s;
                        inv[node * 2 * m + mode] = c * co;
                        inv[node * 2 * m + m + mode] = -c * s;
                    }
                }
            }
        }
        Ok(Dft {
            forward: Tensor::from_vec(fwd, (2 * m, p), &Device::Cpu)?,
            inverse: Tensor::from_vec(inv, (p, 2 * m), &Device::Cpu)?,
            modes: m,
        })
    }
}

/// One spectral convolution's complex weights, M × C × O each part (modes ordered as the low k_τ block
/// (`weights1`) then the high one (`weights2`), k_x fastest).
struct SpectralConv {
    re: Var,
    im: Var,
}

impl SpectralConv {
    /// h (P × C) ↦ P × O.
    fn forward(&self, dft: &Dft, h: &Tensor) -> Result<Tensor> {
        let m = dft.modes;
        let s = dft.forward.matmul(h)?; // 2M × C
        let x = Tensor::cat(&[&s.narrow(0, 0, m)?, &s.narrow(0, m, m)?], 1)?.unsqueeze(1)?; // M × 1 × 2C
        let (re, im) = (self.re.as_tensor(), self.im.as_tensor());
        // [Re, Im] = [Xr, Xi] [[Wr, Wi], [−Wi, Wr]]
        let block = Tensor::cat(
            &[
                &Tensor::cat(&[re, im], 2)?,
                &Tensor::cat(&[&im.neg()?, re], 2)?,
            ],
            1,
        )?;
        let y = x.matmul(&block)?.squeeze(1)?; // M × 2O
        let o = re.dims()[2];
        let spectrum = Tensor::cat(&[&y.narrow(1, 0, o)?, &y.narrow(1, o, o)?], 0)?; // 2M × O
        Ok(dft.inverse.matmul(&spectrum)?)
    }
}

/// The basis functions and their grid derivatives at every node, each P × K.
pub struct GridJet {
    pub grid: Grid,
    pub jet: Jet,
}

impl GridJet {
    /// The jet at the nodes `pts` (x, τ), in that order.
    pub fn at(&self, pts: &[[f64; 2]]) -> Result<Jet> {
        let rows = pts
            .iter()
            .map(|&p| self.grid.row(p).map(|r| r as u32))
            .collect::<Result<Vec<u32>>>()?;
        let idx = Tensor::from_vec(rows, pts.len(), &Device::Cpu)?;
        let pick = |t: &Tensor| -> Result<Tensor> { Ok(t.index_select(&idx, 0)?) };
        Ok(Jet {
            v: pick(&self.jet.v)?,
            x: pick(&self.jet.x)?,
            xx: pick(&self.jet.xx)?,
            t: pick(&self.jet.t)?,
        })
    }
}

/// A pointwise linear map (weights in × out, bias out).
type Linear = (Var, Var);

fn linear(l: &Linear, h: &Tensor) -> Result<Tensor> {
    Ok(crate::nn::matmul::matmul(h, l.0.as_tensor())?.broadcast_add(l.1.as_tensor())?)
}

/// The FNO basis network on its grid (f64).
pub struct Fno {
    cfg: FnoConfig,
    grid: Grid,
    dft: Dft,
    input: Tensor,
    fc0: Linear,
    blocks: Vec<(SpectralConv, Linear)>,
    fc1: Linear,
    fc2: Linear,
}

fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.gelu()?)
}

impl Fno {
    /// A network with the official initialisation (linear and 1 × 1 convolution layers uniform in ±1/√fan_in,
    /// weights and biases; spectral weights (N(0, 1) + i N(0, 1)) / √((C + O)/2)) from `seed`, for the initial
    /// condition `u0` on the grid.
    pub fn new(cfg: FnoConfig, periodic: bool, u0: &dyn Fn(f64) -> f64, seed: u64) -> Result<Self> {
        let FnoConfig {
            width,
            layers,
            modes: (m1, m2),
            fc,
            k,
            grid: (nt, nx),
        } = cfg;
        if width == 0 || layers == 0 || fc == 0 || k == 0 || width > 1024 || fc > 4096 || k > 1024 {
            return Err(Error::invalid(format!(
                "FNO basis: width {width}, layers {layers}, fc {fc} and K {k} must be positive (width ≤ 1024, fc ≤ 4096, K ≤ 1024)"
            )));
        }
        if nt < 3 || nx < 3 || m1 == 0 || m2 == 0 || m1 > nt / 2 || m2 > nx / 2 {
            return Err(Error::invalid(format!(
                "FNO basis: a {nt} × {nx} grid (each ≥ 3) keeps at most {} modes in τ and {} in x; {m1} and {m2} asked",
                nt / 2,
                nx / 2
            )));
        }
        // Sizes in f64 (no overflow) before anything is allocated: the transforms, the activations of every layer
        // and their gradients, and the spectral weights with their block copies, gradients and Adam state.
        let (p, m) = (nt as f64 * nx as f64, 2.0 * m1 as f64 * m2 as f64);
        let floats = 4.0 * p * m
            + 3.0 * p * (width + fc + 4 * k + 4) as f64 * (layers as f64 + 4.0)
            + 14.0 * m * (width * width) as f64 * layers as f64;
        crate::memory::check(
            "the FNO basis (its transforms, weights and activations)",
            8.0 * floats,
            "use a smaller grid, fewer modes or a narrower network",
        )?;
        let (p, m) = (nt * nx, 2 * m1 * m2);
        let grid = Grid::new(nt, nx, periodic)?;
        let dft = Dft::new(grid, (m1, m2))?;
        let mut input = Vec::with_capacity(p * 4);
        for row in 0..p {
            let [x, t] = grid.point(row);
            input.push(t);
            if periodic {
                let (s, c) = (TAU * x).sin_cos();
                input.extend([s, c]);
            } else {
                input.push(x);
            }
            input.push(u0(x));
        }
        let channels = if periodic { 4 } else { 3 };
        let input = Tensor::from_vec(input, (p, channels), &Device::Cpu)?;
        let mut init = Init {
            rng: rng_for(seed, Stream::Init, 9),
            dtype: DType::F64,
        };
        let mut lin = |i: usize, o: usize| -> Result<Linear> {
            let b = 1.0 / (i as f64).sqrt();
            Ok((
                init.uniform(String::new(), &[i, o], b)?.var,
                init.uniform(String::new(), &[o], b)?.var,
            ))
        };
        let fc0 = lin(channels, width)?;
        let mut pointwise = Vec::with_capacity(layers);
        for _ in 0..layers {
            pointwise.push(lin(width, width)?);
        }
        let fc1 = lin(width, fc)?;
        let fc2 = lin(fc, k)?;
        let mut init = Init {
            rng: rng_for(seed, Stream::Init, 10),
            dtype: DType::F64,
        };
        let scale = 1.0 / (width as f64).sqrt(); // (C + O)/2 = width
        let mut complex =
            || -> Result<Var> { Ok(init.normal(String::new(), &[m, width, width], scale)?.var) };
        let blocks = pointwise
            .into_iter()
            .map(|pw| {
                Ok((
                    SpectralConv {
                        re: complex()?,
                        im: complex()?,
                    },
                    pw,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Fno {
            cfg,
            grid,
            dft,
            input,
            fc0,
            blocks,
            fc1,
            fc2,
        })
    }

    pub fn config(&self) -> FnoConfig {
        self.cfg
    }

    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// The parameters in a fixed order: fc0 (w, b); per block the spectral (re, im) then the 1 × 1 convolution
    /// (w, b); fc1; fc2. Weights are in × out; spectral parts M × C × O.
    pub fn vars(&self) -> Vec<Var> {
        let mut v = vec![self.fc0.0.clone(), self.fc0.1.clone()];
        for (s, pw) in &self.blocks {
            v.extend([s.re.clone(), s.im.clone(), pw.0.clone(), pw.1.clone()]);
        }
        v.extend([
            self.fc1.0.clone(),
            self.fc1.1.clone(),
            self.fc2.0.clone(),
            self.fc2.1.clone(),
        ]);
        v
    }

    /// φ at every node (P × K).
    pub fn forward(&self) -> Result<Tensor> {
        let mut h = linear(&self.fc0, &self.input)?;
        for (spectral, pw) in &self.blocks {
            h = gelu(&spectral.forward(&self.dft, &h)?.add(&linear(pw, &h)?)?)?;
        }
        let h = gelu(&linear(&self.fc1, &h)?)?;
        gelu(&linear(&self.fc2, &h)?)
    }

    /// φ and its finite-difference derivatives at every node.
    pub fn evaluate(&self) -> Result<GridJet> {
        let Grid { nt, nx, periodic } = self.grid;
        let k = self.cfg.k;
        let v = self.forward()?.reshape((nt, nx, k))?;
        let hx = 1.0 / self.grid.x_div();
        let ht = 1.0 / (nt - 1) as f64;
        let dx = difference(&v, 1, hx, periodic)?;
        let dxx = difference(&dx, 1, hx, periodic)?;
        let dt = difference(&v, 0, ht, false)?;
        let flat = |t: Tensor| -> Result<Tensor> { Ok(t.reshape((nt * nx, k))?) };
        Ok(GridJet {
            grid: self.grid,
            jet: Jet {
                v: flat(v)?,
                x: flat(dx)?,
                xx: flat(dxx)?,
                t: flat(dt)?,
            },
        })
    }
}

/// The first difference along `axis` with spacing h: central inside, forward at the first node and backward at
/// the last (the official `fdm_first_order_derivative`), or central throughout with wrap-around when periodic.
pub fn difference(u: &Tensor, axis: usize, h: f64, periodic: bool) -> Result<Tensor> {
    let n = u.dims().get(axis).copied().unwrap_or(0);
    if n < 3 {
        return Err(Error::Shape(format!(
            "a finite difference needs at least 3 nodes along axis {axis}, not {n}"
        )));
    }
    if periodic {
        let next = Tensor::cat(&[&u.narrow(axis, 1, n - 1)?, &u.narrow(axis, 0, 1)?], axis)?;
        let prev = Tensor::cat(
            &[&u.narrow(axis, n - 1, 1)?, &u.narrow(axis, 0, n - 1)?],
            axis,
        )?;
        return Ok(next.sub(&prev)?.affine(0.5 / h, 0.0)?);
    }
    let inside = u
        .narrow(axis, 2, n - 2)?
        .sub(&u.narrow(axis, 0, n - 2)?)?
        .affine(0.5 / h, 0.0)?;
    let first = u
        .narrow(axis, 1, 1)?
        .sub(&u.narrow(axis, 0, 1)?)?
        .affine(1.0 / h, 0.0)?;
    let last = u
        .narrow(axis, n - 1, 1)?
        .sub(&u.narrow(axis, n - 2, 1)?)?
        .affine(1.0 / h, 0.0)?;
    Ok(Tensor::cat(&[&first, &inside, &last], axis)?)
}
