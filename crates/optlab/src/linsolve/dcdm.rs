//! P18 — the deep conjugate direction method (Kaneda, Akar, Chen, Kala, Hyde, Teran, ICML 2023), following the
//! official code (ayano721/2023_DCDM, `lib/conjugate_gradient.py` `dcdm` and `src/train.py`).
//!
//! Each iteration asks the network for a direction q = f_θ(r/‖r‖), A-orthogonalizes it against the two previous
//! directions, steps x += q (qᵀr)/(qᵀAq) and recomputes the true residual r = b − Ax; it stops when
//! ‖r‖ ≤ tol·‖r₀‖. The network is trained without solutions: the loss of a right-hand side b is the residual
//! after one optimal step along q = f_θ(b), ‖b − A q (qᵀb)/(qᵀAq)‖², averaged over the batch.
//!
//! Deviations: the network's output is zeroed on solid cells (their identity rows decouple them, see
//! [`super::poisson`]), so every direction lies in the fluid block; and a solve whose residual has not reached a
//! new minimum for [`STALL`] iterations stops there, unconverged (the reference runs on to its iteration limit:
//! once the network's direction falls into the span of the last two, the residual stays put).

use super::csr::{axpby, axpy, dot, norm, Csr};
use super::krylov::{check_rhs, Solve, Stop};
use super::net::DirectionNet;
use super::poisson::Grid;
use crate::nn::conv::conv2d_same;
use crate::optim::{from_spec, Optimizer};
use crate::rng::{permutation, rng_for, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

/// A Poisson system on a grid, with the tensors that apply its matrix to a batch of grids inside the autodiff
/// graph (the stencil as a convolution): A q = diag ⊙ q − fluid ⊙ (sum of the four neighbours of q).
pub struct PoissonSystem {
    pub grid: Grid,
    pub matrix: Csr,
    diag: Tensor,
    fluid: Tensor,
    cross: Tensor,
}

impl PoissonSystem {
    pub fn new(grid: Grid) -> Result<Self> {
        let n = grid.n;
        let matrix = grid.laplacian()?;
        let t = |v: Vec<f64>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, (1, 1, n, n), &Device::Cpu)?.to_dtype(DType::F32)?)
        };
        let diag = t(grid.diagonal())?;
        let fluid = t(grid.fluid_mask())?;
        let cross = Tensor::from_vec(
            vec![0f32, 1., 0., 1., 0., 1., 0., 1., 0.],
            (1, 1, 3, 3),
            &Device::Cpu,
        )?;
        Ok(PoissonSystem {
            grid,
            matrix,
            diag,
            fluid,
            cross,
        })
    }

    /// A q for q of shape `[batch, 1, n, n]` zero on solid cells.
    pub fn apply(&self, q: &Tensor) -> Result<Tensor> {
        let nbrs = conv2d_same(q, &self.cross)?.broadcast_mul(&self.fluid)?;
        Ok((q.broadcast_mul(&self.diag)? - nbrs)?)
    }

    /// The network's direction for a batch, zeroed on solid cells.
    pub fn direction(&self, net: &DirectionNet, x: &Tensor, detach: bool) -> Result<Tensor> {
        Ok(net.forward(x, detach)?.broadcast_mul(&self.fluid)?)
    }

    /// P18's loss for right-hand sides `b` (`[batch, 1, n, n]`): the mean over the batch of ‖b − A q (qᵀb)/(qᵀAq)‖².
    pub fn loss(&self, net: &DirectionNet, b: &Tensor) -> Result<Tensor> {
        let q = self.direction(net, b, false)?;
        let aq = self.apply(&q)?;
        let qb = (&q * b)?.sum_keepdim((1, 2, 3))?;
        let qaq = (&q * &aq)?.sum_keepdim((1, 2, 3))?;
        let r = (b - aq.broadcast_mul(&(qb / qaq)?)?)?;
        let batch = b.dim(0)?;
        Ok((r.sqr()?.sum_all()? / batch as f64)?)
    }
}

/// How [`train`] runs (the reference: Adam at 1e-4, batches of 10).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub optimizer: String,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 2000,
            batch_size: 10,
            optimizer: "adam:lr=1e-4".into(),
            seed: 0,
        }
    }
}

/// Training of a direction network, one step at a time (so a run can checkpoint between steps): batches are
/// drawn from unit right-hand sides (`samples × n²`, f32) in a fresh seeded permutation per epoch, so the batch of
/// every step follows from the step count alone.
pub struct Trainer<'a> {
    pub net: &'a DirectionNet,
    system: &'a PoissonSystem,
    data: &'a [f32],
    pub cfg: TrainConfig,
    pub opt: Box<dyn Optimizer>,
    /// Steps taken.
    pub step: usize,
    order: (u64, Vec<usize>),
}

impl<'a> Trainer<'a> {
    pub fn new(
        net: &'a DirectionNet,
        system: &'a PoissonSystem,
        data: &'a [f32],
        cfg: TrainConfig,
    ) -> Result<Self> {
        let cells = system.grid.cells();
        if data.is_empty()
            || !data.len().is_multiple_of(cells)
            || cfg.batch_size == 0
            || cfg.steps == 0
        {
            return Err(Error::invalid(format!(
                "DCDM training: need right-hand sides of {cells} values, steps >= 1 and batch_size >= 1"
            )));
        }
        let opt = from_spec(&cfg.optimizer)?;
        Ok(Trainer {
            net,
            system,
            data,
            cfg,
            opt,
            step: 0,
            order: (u64::MAX, Vec::new()),
        })
    }

    /// The next step's batch: draws `step·batch ..` of the epoch-wise permutations.
    fn batch(&mut self) -> Result<Tensor> {
        let (cells, n) = (self.system.grid.cells(), self.system.grid.n);
        let samples = self.data.len() / cells;
        let batch = self.cfg.batch_size.min(samples);
        let mut rows = Vec::with_capacity(batch * cells);
        for k in self.step * batch..(self.step + 1) * batch {
            let epoch = (k / samples) as u64;
            if self.order.0 != epoch {
                self.order = (
                    epoch,
                    permutation(samples, &mut rng_for(self.cfg.seed, Stream::Shuffle, epoch)),
                );
            }
            let i = self.order.1[k % samples];
            rows.extend_from_slice(&self.data[i * cells..(i + 1) * cells]);
        }
        Ok(Tensor::from_vec(rows, (batch, 1, n, n), &Device::Cpu)?)
    }

    /// One optimizer step; returns the batch's loss.
    pub fn step(&mut self) -> Result<f64> {
        let b = self.batch()?;
        let loss = self.system.loss(self.net, &b)?;
        let v = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !v.is_finite() {
            return Err(Error::NonFinite(format!(
                "DCDM training: the loss became {v} at step {}; lower the learning rate",
                self.step + 1
            )));
        }
        self.opt.backward_step(self.net.params(), &loss)?;
        self.step += 1;
        Ok(v)
    }
}

/// Trains `net` for `cfg.steps` steps; `on_step(step, loss)` after every step.
pub fn train(
    net: &DirectionNet,
    system: &PoissonSystem,
    data: &[f32],
    cfg: &TrainConfig,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<()> {
    let mut t = Trainer::new(net, system, data, cfg.clone())?;
    while t.step < cfg.steps {
        let v = t.step()?;
        on_step(t.step, v);
    }
    Ok(())
}

/// A search-direction oracle for [`dcdm`]: the normalized residual in, a direction out.
pub trait Direction {
    fn direction(&self, r: &[f64]) -> Result<Vec<f64>>;
}

/// The trained network on one system's grid.
pub struct NetDirection<'a> {
    pub net: &'a DirectionNet,
    pub system: &'a PoissonSystem,
}

impl Direction for NetDirection<'_> {
    fn direction(&self, r: &[f64]) -> Result<Vec<f64>> {
        let n = self.system.grid.n;
        let x = Tensor::from_vec(
            r.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (1, 1, n, n),
            &Device::Cpu,
        )?;
        let q = self.system.direction(self.net, &x, true)?;
        Ok(q.flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect())
    }
}

/// Iterations without a new minimum residual after which [`dcdm`] gives up.
pub const STALL: usize = 50;

/// The DCDM iteration from x = 0 (the reference's `dcdm`).
pub fn dcdm(a: &Csr, b: &[f64], dir: &dyn Direction, stop: Stop) -> Result<Solve> {
    stop.check()?;
    let nb = check_rhs(a, b)?;
    let start = Instant::now();
    let n = a.n;
    let mut x = vec![0.0; n];
    let mut r = b.to_vec();
    let mut residuals = vec![nb];
    let mut times = vec![0.0];
    let (mut p0, mut p1, mut ap0, mut ap1) =
        (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let (mut alpha0, mut alpha1) = (1.0, 1.0);
    let mut nr = nb;
    let mut converged = nb == 0.0;
    let (mut best, mut best_at) = (nb, 0);
    while !converged && residuals.len() <= stop.max_iters && residuals.len() - best_at <= STALL {
        let rn: Vec<f64> = r.iter().map(|v| v / nr).collect();
        let mut q = dir.direction(&rn)?;
        if q.len() != n {
            return Err(Error::Shape(format!(
                "DCDM: a direction of {} values for {n} unknowns",
                q.len()
            )));
        }
        let (c1, c0) = (dot(&q, &ap1) / alpha1, dot(&q, &ap0) / alpha0);
        axpy(-c1, &p1, &mut q);
        axpy(-c0, &p0, &mut q);
        std::mem::swap(&mut p0, &mut p1);
        std::mem::swap(&mut ap0, &mut ap1);
        a.matvec_into(&q, &mut ap1);
        p1 = q;
        alpha0 = alpha1;
        alpha1 = dot(&p1, &ap1);
        if !(alpha1 > 0.0 && alpha1.is_finite()) {
            return Err(Error::NonFinite(format!(
                "DCDM: the direction at iteration {} has qᵀAq = {alpha1:e} (a zero or non-finite direction, or a \
                 matrix that is not positive definite)",
                residuals.len()
            )));
        }
        let beta = dot(&p1, &r);
        axpy(beta / alpha1, &p1, &mut x);
        a.matvec_into(&x, &mut r);
        axpby(1.0, b, -1.0, &mut r);
        nr = norm(&r);
        residuals.push(nr);
        times.push(start.elapsed().as_secs_f64());
        if nr < best {
            (best, best_at) = (nr, residuals.len() - 1);
        }
        converged = nr <= stop.tol * nb;
    }
    Ok(Solve {
        x,
        iterations: residuals.len() - 1,
        residuals,
        times,
        converged,
        seconds: start.elapsed().as_secs_f64(),
    })
}
