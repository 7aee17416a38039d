//! Any optimizer of the suite, with a learning-rate schedule, on one flat vector of f64: for the small problems
//! whose gradients come from outside the network engine (a simulator's reverse pass, a hand-written adjoint).
//!
//! ```
//! use optlab::optim::flat::FlatDescent;
//! let mut d = FlatDescent::new(&[3.0, -2.0], "adam:lr=0.1", "constant", 300)?;
//! for _ in 0..300 {
//!     let x = d.x()?;
//!     d.step(&[2.0 * x[0], 2.0 * x[1]])?;
//! }
//! assert!(d.x()?.iter().all(|v| v.abs() < 1e-2));
//! # Ok::<(), optlab::Error>(())
//! ```

use super::{from_spec, grads_for, Optimizer};
use crate::nn::Param;
use crate::schedule::Schedule;
use crate::{Error, Result};
use candle_core::{Device, Tensor, Var};

/// An optimizer from its spec driving one vector.
pub struct FlatDescent {
    param: [Param; 1],
    opt: Box<dyn Optimizer>,
    schedule: Box<dyn Schedule>,
    step: u64,
}

impl FlatDescent {
    /// `optimizer` and `schedule` as the CLI takes them; `steps` is the schedule's horizon.
    pub fn new(x0: &[f64], optimizer: &str, schedule: &str, steps: u64) -> Result<Self> {
        if x0.is_empty() || x0.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "the starting point must be a non-empty finite vector",
            ));
        }
        let opt = from_spec(optimizer)?;
        let n = x0.len() as f64;
        crate::memory::check(
            &format!(
                "the optimizer's state ({} buffers of {n} values)",
                opt.buffer_count()
            ),
            8.0 * n * (3.0 + opt.buffer_count() as f64) + opt.extra_state_bytes(n),
            "use an optimizer with less state",
        )?;
        let var = Var::from_tensor(&Tensor::from_vec(x0.to_vec(), x0.len(), &Device::Cpu)?)?;
        Ok(FlatDescent {
            param: [Param {
                name: "x".into(),
                var,
            }],
            opt,
            schedule: crate::schedule::from_spec(schedule, steps)?,
            step: 0,
        })
    }

    /// The current point.
    pub fn x(&self) -> Result<Vec<f64>> {
        Ok(self.param[0].tensor().to_vec1::<f64>()?)
    }

    /// One step along the gradient `g` at the current point.
    pub fn step(&mut self, g: &[f64]) -> Result<()> {
        if g.len() != self.param[0].var.elem_count() || g.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "the gradient at step {} is not a finite vector of the parameters' length",
                self.step
            )));
        }
        self.opt
            .apply_schedule("lr", self.schedule.factor(self.step))?;
        let grad = Tensor::from_vec(g.to_vec(), g.len(), &Device::Cpu)?;
        self.opt
            .step(&self.param, &grads_for(&self.param, &[grad])?)?;
        self.step += 1;
        Ok(())
    }
}
