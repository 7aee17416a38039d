//! The f-DPO loss (P37) as one function of four log-probabilities, as TRL's `dpo_loss` is: with u = π/π_ref for
//! the chosen (w) and the rejected (l) response, logits = f′(u_w) − f′(u_l) and
//! loss = −(1 − ε) log σ(β·logits) − ε log σ(−β·logits), ε the label smoothing of conservative DPO (ε = 0 is the
//! official code's loss). The rewards are β f′(u), as the official code reports them.
//!
//! Deviations: the official JS loss writes log 2 as 0.6931471806, which shifts its rewards (not its loss) by
//! β·5.6e-11; here it is ln 2. The official code honours `reference_free` only for reverse KL and ignores it for the other
//! divergences; here it always means the uniform reference its docstring describes (reference log-probabilities
//! taken as 0), for every divergence.

use super::divergence::Divergence;
use crate::{Error, Result};
use candle_core::Tensor;

/// The loss's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpoLoss {
    pub divergence: Divergence,
    /// The inverse temperature β > 0 (official default 0.1).
    pub beta: f64,
    /// The probability ε in [0, 0.5) that a preference label is flipped (conservative DPO; 0 by default).
    pub label_smoothing: f64,
    /// Ignore the given reference log-probabilities (a uniform reference).
    pub reference_free: bool,
}

impl Default for DpoLoss {
    fn default() -> Self {
        DpoLoss {
            divergence: Divergence::ReverseKl,
            beta: 0.1,
            label_smoothing: 0.0,
            reference_free: false,
        }
    }
}

/// The per-pair losses and rewards of a batch.
#[derive(Debug, Clone)]
pub struct DpoOutput {
    /// One loss per pair (differentiable).
    pub losses: Tensor,
    /// β f′(u_w), detached.
    pub chosen_rewards: Tensor,
    /// β f′(u_l), detached.
    pub rejected_rewards: Tensor,
}

impl DpoLoss {
    /// Checks β and ε.
    pub fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::invalid(format!(
                "dpo: beta = {} must be a positive number (the paper uses 0.1)",
                self.beta
            )));
        }
        if !(self.label_smoothing.is_finite() && (0.0..0.5).contains(&self.label_smoothing)) {
            return Err(Error::invalid(format!(
                "dpo: label_smoothing = {} must lie in [0, 0.5)",
                self.label_smoothing
            )));
        }
        if let Divergence::Alpha(a) = self.divergence {
            Divergence::alpha(a)?;
        }
        Ok(())
    }

    /// f′(u_w) and f′(u_l) for a batch (before β), u = exp(policy − reference).
    pub fn links(
        &self,
        policy_chosen: &Tensor,
        policy_rejected: &Tensor,
        reference_chosen: &Tensor,
        reference_rejected: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let dims = policy_chosen.dims();
        for (name, t) in [
            ("policy_rejected", policy_rejected),
            ("reference_chosen", reference_chosen),
            ("reference_rejected", reference_rejected),
        ] {
            if t.dims() != dims {
                return Err(Error::Shape(format!(
                    "dpo: {name} has shape {:?}, policy_chosen {dims:?}",
                    t.dims()
                )));
            }
        }
        Ok((
            self.divergence.link(&(policy_chosen - reference_chosen)?)?,
            self.divergence
                .link(&(policy_rejected - reference_rejected)?)?,
        ))
    }

    /// The losses and rewards of a batch of pairs (1-D tensors of sequence log-probabilities, all one shape).
    /// The rewards always use the given reference, as the official code's do, `reference_free` or not.
    pub fn forward(
        &self,
        policy_chosen: &Tensor,
        policy_rejected: &Tensor,
        reference_chosen: &Tensor,
        reference_rejected: &Tensor,
    ) -> Result<DpoOutput> {
        self.validate()?;
        let (w, l) = self.links(
            policy_chosen,
            policy_rejected,
            reference_chosen,
            reference_rejected,
        )?;
        let logits = if self.reference_free {
            let zero = policy_chosen.zeros_like()?;
            let (w0, l0) = self.links(policy_chosen, policy_rejected, &zero, &zero)?;
            (w0 - l0)?
        } else {
            (&w - &l)?
        };
        let z = (logits * self.beta)?;
        let mut losses = log_sigmoid(&z)?.neg()?;
        if self.label_smoothing > 0.0 {
            let flipped = log_sigmoid(&z.neg()?)?.neg()?;
            losses =
                ((losses * (1.0 - self.label_smoothing))? + (flipped * self.label_smoothing)?)?;
        }
        Ok(DpoOutput {
            losses,
            chosen_rewards: (w * self.beta)?.detach(),
            rejected_rewards: (l * self.beta)?.detach(),
        })
    }
}

/// log σ(z) = −softplus(−z).
fn log_sigmoid(z: &Tensor) -> Result<Tensor> {
    Ok(crate::nn::loss::softplus(&z.neg()?)?.neg()?)
}
